"""Auth0's SDK: ``auth0-fastapi-api`` (on ``auth0-api-python``) as its README shows it.

``Auth0FastAPI(domain, audience)`` and the ``require_auth(scopes=...)`` dependency, with the
defaults (DPoP allowed, Bearer accepted). It discovers the keys from
``https://{AUTH0_DOMAIN}/.well-known/openid-configuration``: https only.
"""

import os

from fastapi import Depends, FastAPI, UploadFile
from fastapi_plugin import Auth0FastAPI

app = FastAPI()
auth0 = Auth0FastAPI(domain=os.environ["AUTH0_DOMAIN"], audience=os.environ["AUTH0_AUDIENCE"])


@app.get("/health")
def health():
    return {"status": "OK"}


@app.post("/upload")
async def upload(
    file: UploadFile, claims: dict = Depends(auth0.require_auth(scopes="get::prediction"))
):
    return {"received_bytes": len(await file.read())}
