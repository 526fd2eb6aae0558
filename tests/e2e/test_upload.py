"""Token from the development issuer, then /upload on the API: the production client flow."""

import socket
import time

import httpx

from cats_dogs_other.loopback import LOOPBACK
from cats_dogs_other.testing.images import png
from tests.e2e.support import CLASSES, E2EModel, StackProcess


def upload(stack: StackProcess, image: bytes, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        stack.api_url + "/upload",
        files={"file": ("image.png", image, "image/png")},
        headers=headers,
        timeout=30,
    )


def test_token_then_upload_gives_a_prediction(stack: StackProcess, e2e_model: E2EModel) -> None:
    response = upload(stack, png((230, 20, 20)), stack.token())

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prediction"] in CLASSES
    assert len(body["values"]) == len(CLASSES)
    assert abs(sum(body["values"]) - 1.0) < 1e-3
    if e2e_model.red is not None:
        assert body["prediction"] == e2e_model.red


def test_upload_without_token_is_401_with_bearer_challenge(stack: StackProcess) -> None:
    response = upload(stack, png((230, 20, 20)), token=None)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_rejected_upload_still_arriving_does_not_hold_its_connection(
    stack: StackProcess,
) -> None:
    """The 401 goes out before the body; once the body is in, the idle connection times out."""
    body = (
        b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\n"
        + b"x" * 100_000
        + b"\r\n--b--\r\n"
    )
    head = (
        b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection((LOOPBACK, stack.api_port)) as sock:
        sock.sendall(head + body[:1000])
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 401")
        sock.sendall(body[1000:])
        start = time.monotonic()
        sock.settimeout(30)
        while sock.recv(65536):
            pass
    assert time.monotonic() - start < 10  # uvicorn's 5 s keep-alive timeout


def test_token_without_the_scope_is_403_insufficient_scope(stack: StackProcess) -> None:
    token = stack.token("no-scope-client", "no-scope-secret")

    response = upload(stack, png((230, 20, 20)), token)

    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_a_token_from_another_issuer_instance_is_refused(stack: StackProcess) -> None:
    """A token signed by a key the issuer does not publish (here: edited signature) is 401."""
    header, payload, signature = stack.token().split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"

    response = upload(stack, png((230, 20, 20)), forged)

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
