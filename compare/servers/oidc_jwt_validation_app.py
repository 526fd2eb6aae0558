"""``oidc-jwt-validation`` wired into FastAPI the way its usual examples do.

FastAPI's ``OAuth2PasswordBearer`` extracts the token and ``Authentication.validate_async`` checks
it with the issuer, audience and scope; configured by the three variables this API reads too,
``OAUTH2_ISSUER``, ``OAUTH2_AUDIENCE`` and ``OAUTH2_JWKS_URI`` (relative to the issuer).
"""

import logging
import os

from fastapi import Depends, FastAPI, UploadFile
from fastapi.security import OAuth2PasswordBearer
from oidc_jwt_validation.authentication import Authentication
from oidc_jwt_validation.http_service import ServiceGet

app = FastAPI()
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")
issuer = os.getenv("OAUTH2_ISSUER")
audience = os.getenv("OAUTH2_AUDIENCE")
jwks_uri = os.getenv("OAUTH2_JWKS_URI")
logger = logging.getLogger(__name__)
authentication = Authentication(logger, issuer, ServiceGet(logger), jwks_uri)


@app.get("/health")
def health():
    return {"status": "OK"}


@app.post("/upload")
async def upload(file: UploadFile, token: str = Depends(oauth2_scheme)):
    await authentication.validate_async(token, audience, "get::prediction")
    return {"received_bytes": len(await file.read())}
