// DPoP proofs (RFC 9449 section 4.2) for the collection's requests, with Node's crypto.
// Needs the developer sandbox: bru run --sandbox=developer (the safe sandbox has no ECDSA).
const crypto = require("crypto");

function b64url(data) {
  return Buffer.from(data).toString("base64url");
}

// A new P-256 key pair, kept as a private JWK string in a runtime variable between requests.
function newKey() {
  const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  return JSON.stringify(privateKey.export({ format: "jwk" }));
}

// A fresh proof for one request: new jti, current iat, ath when a token goes with it.
function proof(keyJson, method, url, accessToken) {
  const privateJwk = JSON.parse(keyJson);
  const { kty, crv, x, y } = privateJwk;
  const header = { typ: "dpop+jwt", alg: "ES256", jwk: { kty, crv, x, y } };
  const payload = {
    jti: crypto.randomUUID(),
    htm: method,
    htu: url.split("?")[0].split("#")[0],
    iat: Math.floor(Date.now() / 1000),
  };
  if (accessToken) {
    payload.ath = b64url(crypto.createHash("sha256").update(accessToken, "ascii").digest());
  }
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const key = crypto.createPrivateKey({ key: privateJwk, format: "jwk" });
  const signature = crypto.sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
  return `${input}.${b64url(signature)}`;
}

module.exports = { newKey, proof };
