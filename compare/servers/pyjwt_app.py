"""A PyJWT tutorial: ``PyJWKClient`` and ``jwt.decode`` as PyJWT's documentation pairs them.

One ``PyJWKClient`` for the process (it caches the key set), FastAPI's ``HTTPBearer`` for the
header, the key chosen by the token's ``kid``, ``jwt.decode`` with the algorithm, audience and
issuer, PyJWT's errors answered 401, and the scope read from the space-separated ``scope``
claim, as the common FastAPI + Auth0 tutorials write it.
"""

import os

import jwt
from fastapi import Depends, FastAPI, HTTPException, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ISSUER = os.environ["ISSUER"]
AUDIENCE = os.environ["AUDIENCE"]
jwks_client = jwt.PyJWKClient(os.environ["JWKS_URL"])
bearer = HTTPBearer()
app = FastAPI()


def verify_token(credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> dict:
    token = credentials.credentials
    try:
        signing_key = jwks_client.get_signing_key_from_jwt(token)
    except (jwt.exceptions.PyJWKClientError, jwt.exceptions.DecodeError) as error:
        raise HTTPException(status_code=401, detail=str(error)) from error
    try:
        claims = jwt.decode(
            token, signing_key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER
        )
    except jwt.InvalidTokenError as error:
        raise HTTPException(status_code=401, detail=str(error)) from error
    if "get::prediction" not in claims.get("scope", "").split():
        raise HTTPException(status_code=403, detail="Insufficient scope")
    return claims


@app.get("/health")
def health():
    return {"status": "OK"}


@app.post("/upload")
async def upload(file: UploadFile, claims: dict = Depends(verify_token)):
    return {"received_bytes": len(await file.read())}
