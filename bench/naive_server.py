"""(b) The naive server: one model call per request, the benchmark's baseline. NOT FOR USE.

An ``async def`` handler that validates the bearer token and then runs the model for this one
request, right on the event loop: nothing else (not even ``/health``) is served meanwhile, and
every call pays the per-call overhead of the model. Two flavours (``--mode``):

* ``course``: the textbook Keras handler -- decode, then ``model.predict(x)`` per request;
* ``wheel``: the same handler calling this project's ``Inference.execute`` (compiled forward
  pass, no ``model.predict``), to show what batching adds on top of a faster call.

Token validation uses the API's own validator (``cats_dogs_other.api.auth.tokens``) and key cache,
so the comparison with (c) is like for like. Configuration comes from the same environment
variables as the API (``OAUTH2_ISSUER``, ``OAUTH2_AUDIENCE``, ``MODEL_PATH``...).

``python -m bench.naive_server --port 8123 --mode course``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile

from cats_dogs_other.api.auth.jwks import KeyCache
from cats_dogs_other.api.auth.tokens import TokenValidator
from cats_dogs_other.api.errors import AuthError
from cats_dogs_other.api.settings import Settings


def course_execute(inference: Any) -> Callable[[bytes], dict[str, Any]]:
    """The textbook per-request path: numpy preprocessing, then ``model.predict`` on one image."""

    def execute(data: bytes) -> dict[str, Any]:
        pixels = inference.preprocess(data)
        x = inference.metadata.preprocessing.apply(pixels)[np.newaxis]
        probs = inference.model.predict(x, verbose=0)[0]
        return inference.to_result(probs)

    return execute


def create_naive_app(settings: Settings, mode: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from kto.inference import Inference

        inference = Inference(settings.model_path, backend="keras")  # model.predict is Keras
        app.state.execute = course_execute(inference) if mode == "course" else inference.execute
        if mode == "course":  # build Keras' predict function before traffic, as (c) warms up
            height, width = inference.input_size
            inference.model.predict(np.zeros((1, height, width, 3), np.float32), verbose=0)
        async with httpx.AsyncClient() as client:
            keys = KeyCache.from_settings(settings, client)
            app.state.validator = TokenValidator.from_settings(settings, keys)
            yield

    app = FastAPI(title=f"naive server ({mode})", lifespan=lifespan)

    async def principal(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "missing bearer token")
        try:
            found = await request.app.state.validator.validate(token)
        except AuthError as exc:
            raise HTTPException(401, exc.message) from None
        if not found.has_scope(settings.oauth2_scope):
            raise HTTPException(403, "insufficient scope")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "OK"}

    @app.post("/upload", dependencies=[Depends(principal)])
    async def upload(request: Request, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        data = await file.read()
        return request.app.state.execute(data)  # blocks the event loop: the point of (b)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The benchmark's naive baseline server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["course", "wheel"], default="course")
    args = parser.parse_args()
    settings = Settings()  # type: ignore[call-arg]  # OAUTH2_* and MODEL_PATH from the env
    app = create_naive_app(settings, args.mode)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
