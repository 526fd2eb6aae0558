"""authlib's framework-agnostic authorization server, adapted to Starlette. NOT FOR PRODUCTION.

authlib does the OAuth 2.0 parts that are easy to get subtly wrong: grant-type dispatch,
client authentication (HTTP Basic or credentials in the body), RFC 6749 error bodies,
``WWW-Authenticate`` on 401 and the ``no-store`` headers. This module adds only what Auth0
does on top of RFC 6749: the ``audience`` parameter, scopes limited to the client's grant,
403 ``access_denied`` for both, tokens shaped like Auth0's, and DPoP-bound tokens when the
request carries a ``DPoP`` proof (RFC 9449 section 5).
"""

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.errors import InvalidClientError, UnsupportedGrantTypeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import scope_to_list
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from cats_dogs_other.core.dpop import ProofError, ProofVerifier
from cats_dogs_other.core.replay_cache import ReplayCacheFullError
from cats_dogs_other.dev_issuer.settings import ClientConfig
from cats_dogs_other.dev_issuer.tokens import TokenRequest, TokenSigner

AUTH_METHODS = ("client_secret_basic", "client_secret_post")
GRANT_TYPE = "client_credentials"


class AccessDeniedError(OAuth2Error):
    """Auth0 answers 403 ``access_denied`` for an unknown audience or an ungranted scope."""

    error = "access_denied"
    status_code = 403


class InvalidDPoPProofError(OAuth2Error):
    """RFC 9449 section 5: a missing, repeated or failing proof at the token endpoint."""

    error = "invalid_dpop_proof"
    status_code = 400


class ProofCacheFullError(OAuth2Error):
    """The replay cache holds only live proofs: refuse rather than forget one (and allow replay)."""

    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self, description: str, *, retry_after_s: float) -> None:
        super().__init__(description=description)
        self.retry_after_s = retry_after_s

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(max(1, round(self.retry_after_s))))]


def printable(value: str, limit: int = 200) -> str:
    """Echo client input safely: RFC 6749 forbids ``"`` and ``\\`` in error descriptions."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in value[:limit])


@dataclass(frozen=True)
class Client(ClientMixin):
    """A confidential M2M client that may only use the client-credentials grant."""

    client_id: str
    secret: str = field(repr=False)  # authlib logs the client's repr at debug level
    scopes: tuple[str, ...] = ()

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(self.secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE


class TokenEndpointRequest(OAuth2Request):
    """An already-parsed token request (Starlette reads bodies asynchronously)."""

    def __init__(self, uri: str, headers: Headers, parameters: Mapping[str, str]) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = BasicOAuth2Payload(dict(parameters))
        self._parameters = dict(parameters)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._parameters


class Auth0ClientCredentialsGrant(ClientCredentialsGrant):
    """Client credentials plus Auth0's ``audience`` and its scope rules."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def validate_token_request(self) -> None:
        super().validate_token_request()  # authenticates the client
        client: Client = self.request.client
        audience = self._validate_audience()
        scopes = self._granted_scopes(client)
        self.token_request = TokenRequest(
            client_id=client.client_id, audience=audience, scopes=scopes, jkt=self._dpop_key()
        )

    def _dpop_key(self) -> str | None:
        """The proof's key thumbprint, checked only once the client is known (no free slots in
        the replay cache for strangers); None without a proof, for a plain Bearer token."""
        proofs = self.request.headers.getlist("DPoP")
        if not proofs:
            return None
        if len(proofs) > 1:
            raise InvalidDPoPProofError("Send one DPoP proof, not several DPoP headers.")
        try:
            proof = self.server.dpop.verify(
                proofs[0], method="POST", url=self.server.token_endpoint
            )
        except ProofError as error:
            raise InvalidDPoPProofError(error.message) from None
        except ReplayCacheFullError as error:
            raise ProofCacheFullError(
                "Too many recent DPoP proofs; retry shortly.", retry_after_s=error.retry_after_s
            ) from None
        return proof.jkt

    def _validate_audience(self) -> str:
        audience = self.request.payload.data.get("audience")
        expected = self.server.audience
        if not audience:
            raise AccessDeniedError(
                f"Missing 'audience' parameter: ask for a token for an API, e.g. {expected}"
            )
        if audience != expected:
            raise AccessDeniedError(
                f"Service not found: {printable(audience)} (this issuer serves {expected})"
            )
        return str(audience)

    def _granted_scopes(self, client: Client) -> tuple[str, ...]:
        # Like Auth0: no `scope` means everything granted; asking for more is refused.
        requested = scope_to_list(self.request.payload.scope or None)
        if requested is None:
            return client.scopes
        missing = [scope for scope in requested if scope not in client.scopes]
        if missing:
            raise AccessDeniedError(
                f"Client has not been granted scopes: {printable(' '.join(missing))}"
            )
        return tuple(scope for scope in client.scopes if scope in requested)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.server.signer.issue(self.token_request)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class StarletteAuthorizationServer(AuthorizationServer):
    """The Starlette glue authlib asks framework integrations to provide."""

    def __init__(
        self,
        *,
        clients: Mapping[str, ClientConfig],
        audience: str,
        token_endpoint: str,
        signer: TokenSigner,
        dpop: ProofVerifier,
    ) -> None:
        super().__init__(scopes_supported=None)
        self._clients = {
            client_id: Client(client_id, config.secret, tuple(config.scopes))
            for client_id, config in clients.items()
        }
        self.audience = audience
        self.token_endpoint = token_endpoint
        self.signer = signer
        self.dpop = dpop
        self.register_grant(Auth0ClientCredentialsGrant)

    def query_client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Nothing to store: access tokens are self-contained JWTs."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal system here."""

    def authenticate_client(
        self, request: OAuth2Request, methods: Any, endpoint: str = "token"
    ) -> Client:
        # One answer for an unknown client and a wrong secret, always 401 (as Auth0 does).
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as error:
            raise InvalidClientError(
                status_code=401, description="Unknown client_id or wrong client_secret."
            ) from error

    def get_token_grant(self, request: OAuth2Request) -> Auth0ClientCredentialsGrant:
        # authlib leaves this error without a description; say what would work.
        try:
            grant: Auth0ClientCredentialsGrant = super().get_token_grant(request)
        except UnsupportedGrantTypeError as error:
            error.description = (
                f"grant_type={printable(str(error.grant_type))} is not supported; use {GRANT_TYPE}."
            )
            raise
        return grant

    def create_oauth2_request(self, request: TokenEndpointRequest) -> TokenEndpointRequest:
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no JSON endpoints besides the token endpoint")

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def token_response(self, headers: Headers, parameters: Mapping[str, str]) -> JSONResponse:
        """Run authlib's token endpoint on parameters read from a JSON or form body."""
        request = TokenEndpointRequest(self.token_endpoint, headers, parameters)
        response: JSONResponse = self.create_token_response(request)
        return response

    def error_response(self, error: OAuth2Error) -> JSONResponse:
        response: JSONResponse = self.handle_response(*error())
        return response
