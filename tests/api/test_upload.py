"""Uploads: results, size limits, missing parts, bad images; never a 500."""

from __future__ import annotations

import inspect
import struct
import zlib

import pytest
from fastapi.testclient import TestClient

from cats_dogs_other.api.batching import InferenceTimeoutError, QueueFullError
from cats_dogs_other.testing.images import png

LIMIT = 256 * 1024  # upload_client's MAX_UPLOAD_BYTES


def upload(client: TestClient, data: bytes, name: str = "file", **kw):
    return client.post("/upload", files={name: ("image.png", data, "image/png")}, **kw)


def test_each_colour_gets_its_class(upload_client, images) -> None:
    for colour, expected in (("red", "Cat"), ("green", "Dog"), ("blue", "Other")):
        response = upload(upload_client, images[colour])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["prediction"] == expected
        assert len(body["values"]) == 3
        assert abs(sum(body["values"]) - 1) < 1e-4
        assert body["probabilities"] == dict(
            zip(("Cat", "Dog", "Other"), body["values"], strict=True)
        )


def test_jpeg_upload(upload_client) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (20, 230, 20)).save(buffer, format="JPEG")
    response = upload(upload_client, buffer.getvalue())
    assert response.json()["prediction"] == "Dog"


def test_batch_keeps_request_order(upload_client, images) -> None:
    order = ["blue", "red", "green", "red"]
    files = [("file", (f"{c}.png", images[c], "image/png")) for c in order]
    response = upload_client.post("/upload/batch", files=files)
    assert response.status_code == 200, response.text
    assert [r["prediction"] for r in response.json()] == ["Other", "Cat", "Dog", "Cat"]


def test_batch_with_a_bad_part_names_it(upload_client, images) -> None:
    files = [
        ("file", ("a.png", images["red"], "image/png")),
        ("file", ("b.txt", b"hello, not an image", "text/plain")),
        ("file", ("c.png", images["blue"], "image/png")),
    ]
    response = upload_client.post("/upload/batch", files=files)
    assert response.status_code == 415
    assert response.json()["part"] == 1
    assert response.json()["detail"].startswith("File 1: ")


def test_batch_over_the_file_limit(upload_client, images) -> None:
    files = [("file", (f"{i}.png", images["red"], "image/png")) for i in range(5)]
    response = upload_client.post("/upload/batch", files=files)
    assert response.status_code == 422
    assert "at most 4" in response.json()["detail"]


def test_second_file_on_single_upload_is_refused(upload_client, images) -> None:
    files = [("file", ("a.png", images["red"], "image/png"))] * 2
    response = upload_client.post("/upload", files=files)
    assert response.status_code == 422
    assert "at most 1" in response.json()["detail"]


# --- size limits -----------------------------------------------------------------------------


def test_over_limit_with_honest_content_length_is_413(upload_client) -> None:
    response = upload(upload_client, b"\0" * (LIMIT + 20_000))
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"The upload is larger than the limit of {LIMIT} bytes per image (MAX_UPLOAD_BYTES)."
    )


def test_file_over_limit_inside_the_framing_allowance_is_413(upload_client) -> None:
    response = upload(upload_client, b"\0" * (LIMIT + 10))
    assert response.status_code == 413
    assert response.json()["part"] == 0


def test_over_limit_with_a_lying_content_length_is_413(upload_client) -> None:
    """The header says 100 bytes; the bytes received are counted, not the header believed."""
    boundary = "xyz"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        + b"\0" * (LIMIT * 2)
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks():
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    response = upload_client.post(
        "/upload",
        content=chunks(),
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": "100",
        },
    )
    assert response.status_code == 413


# --- missing or malformed parts --------------------------------------------------------------


def test_missing_file_part_is_422(upload_client, images) -> None:
    response = upload(upload_client, images["red"], name="image")
    assert response.status_code == 422
    assert "'file'" in response.json()["detail"]


def test_form_without_any_part_is_422(upload_client) -> None:
    response = upload_client.post("/upload", data={"note": "no image"}, files={"x": ("", b"")})
    assert response.status_code == 422


def test_not_multipart_is_415(upload_client, images) -> None:
    response = upload_client.post(
        "/upload", content=images["red"], headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_cut_multipart_body_is_400(upload_client) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc'
    response = upload_client.post(
        "/upload", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 400
    assert "closing boundary" in response.json()["detail"]


# --- bad images: the wheel's message, 415 or 422 ---------------------------------------------


def test_not_an_image_is_415(upload_client) -> None:
    response = upload(upload_client, b"%PDF-1.7 definitely not a picture")
    assert response.status_code == 415
    assert response.json()["detail"]


def test_empty_file_is_422(upload_client) -> None:
    response = upload(upload_client, b"")
    assert response.status_code == 422
    assert response.json()["detail"]


def test_truncated_image_is_422(upload_client) -> None:
    data = png((200, 10, 10), size=(256, 256))
    response = upload(upload_client, data[: len(data) // 2])
    assert response.status_code == 422
    assert response.json()["detail"]


def test_pixel_bomb_is_422(upload_client) -> None:
    """A tiny PNG whose header claims 100000 x 100000 pixels (10 gigapixels)."""
    response = upload(upload_client, _png_claiming(100_000, 100_000))
    assert response.status_code == 422
    assert "pixels" in response.json()["detail"]


# --- capacity: shed with 503 + Retry-After ---------------------------------------------------


@pytest.mark.parametrize("error", [QueueFullError("full"), InferenceTimeoutError("slow")])
def test_batcher_back_pressure_is_503_with_retry_after(upload_client, images, monkeypatch, error):
    batcher = upload_client.app_state["resources"].batcher  # what the lifespan yielded

    async def refuse(x):
        if inspect.iscoroutine(x):
            x.close()
        raise error

    monkeypatch.setattr(batcher, "submit", refuse)
    response = upload(upload_client, images["red"])
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["detail"] == str(error)


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# --- images too small to classify ------------------------------------------------------------


@pytest.mark.parametrize("size", [(14, 25), (31, 300), (1, 1)])
def test_image_under_the_minimum_side_is_422(upload_client, size) -> None:
    response = upload(upload_client, png((20, 230, 20), size=size))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert f"{size[0]}x{size[1]} pixels: too small to classify" in detail
    assert "at least 32 pixels" in detail


def test_image_at_the_minimum_side_is_classified(upload_client) -> None:
    response = upload(upload_client, png((20, 230, 20), size=(32, 32)))
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == "Dog"


def test_tiny_part_of_a_batch_is_named(upload_client, images) -> None:
    files = [
        ("file", ("a.png", images["red"], "image/png")),
        ("file", ("b.png", png((20, 230, 20), size=(16, 16)), "image/png")),
    ]
    response = upload_client.post("/upload/batch", files=files)
    assert response.status_code == 422
    assert response.json()["part"] == 1 and "too small" in response.json()["detail"]


def test_minimum_side_is_a_setting(make_settings, module_issuer) -> None:
    from cats_dogs_other.api.app import create_app
    from tests.api.support import override_principal

    app = create_app(make_settings(min_image_side=8), transport=module_issuer.transport)
    override_principal(app)
    with TestClient(app) as client:
        assert upload(client, png((20, 230, 20), size=(14, 25))).status_code == 200
        assert upload(client, png((20, 230, 20), size=(7, 25))).status_code == 422


# --- decoding-cost bombs: refused cheaply, before decoding (the wheel's structure walk) -------


def test_repeated_scan_jpeg_bomb_is_422_at_once(upload_client) -> None:
    import time

    from tools.hostile import jpeg_scan_bomb

    bomb = jpeg_scan_bomb((4000, 4000), repeats=600)  # ~160 KB; about a minute of libjpeg CPU
    started = time.perf_counter()
    response = upload_client.post("/upload", files={"file": ("b.jpg", bomb, "image/jpeg")})
    elapsed = time.perf_counter() - started
    assert response.status_code == 422, response.text
    assert "scans" in response.json()["detail"] or "coefficient" in response.json()["detail"]
    assert elapsed < 2.0


@pytest.mark.parametrize("bypass", ["junk_after_app0", "empty_app15"])
def test_a_jpeg_the_walk_cannot_follow_is_422_unverifiable(upload_client, bypass) -> None:
    from tools import hostile

    bomb = hostile.jpeg_scan_bomb((1000, 1000), repeats=250)  # 3.5 s of libjpeg if decoded
    forged = getattr(hostile, f"jpeg_{bypass}")(bomb)
    response = upload_client.post("/upload", files={"file": ("b.jpg", forged, "image/jpeg")})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("the image's structure cannot be verified")


def test_max_jpeg_scans_reaches_the_decoder(make_settings, module_issuer) -> None:
    from cats_dogs_other.api.app import create_app
    from tests.api.support import override_principal
    from tools.hostile import jpeg_scan_bomb

    progressive = jpeg_scan_bomb((64, 64), repeats=0)  # 10 scans, a plain progressive JPEG
    app = create_app(make_settings(max_jpeg_scans=9), transport=module_issuer.transport)
    override_principal(app)
    with TestClient(app) as client:
        response = upload(client, progressive)
    assert response.status_code == 422
    assert "more than 9 scans" in response.json()["detail"]


def test_a_plain_progressive_jpeg_is_classified(upload_client) -> None:
    from tools.hostile import jpeg_scan_bomb

    response = upload(upload_client, jpeg_scan_bomb((64, 64), repeats=0))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "disposition",
    [
        b"form-data; name=\"file\"; filename*=bogus-charset''%ff%fe",
        b"form-data; name*=UTF-8''%ff; filename=\"a.png\"",
        b"form-data; name=" + b'"' * 5_000,
        b"\xff\xfe; name=\xff",
    ],
)
def test_odd_part_headers_are_never_a_server_error(upload_client, images, disposition) -> None:
    """Either the part is still found (a bad filename does not matter) or a 4xx says why."""
    body = (
        b"--x\r\nContent-Disposition: "
        + disposition
        + b"\r\nContent-Type: image/png\r\n\r\n"
        + images["red"]
        + b"\r\n--x--\r\n"
    )
    response = upload_client.post(
        "/upload", content=body, headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code in (200, 400, 415, 422), response.text


# --- a body that does not arrive -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/upload", "/upload/batch"])
def test_a_body_slower_than_the_upload_timeout_is_408(make_settings, module_issuer, path) -> None:
    """Real uvicorn: the head and part of the body arrive, then nothing."""
    import json
    import socket
    import time

    from cats_dogs_other.api.app import create_app
    from tests.api.support import override_principal, serve

    app = create_app(make_settings(upload_timeout_s=1), transport=module_issuer.transport)
    override_principal(app)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n"
    ).encode()
    with serve(app) as address, socket.create_connection(address, timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head + b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n')
        response = sock.recv(65536)
        waited = time.monotonic() - started
        sock.settimeout(2)  # the keep-alive timeout is 5 s: closing is the answer's doing
        try:
            rest = sock.recv(65536)
        except TimeoutError:
            rest = b"(still open 2 s after the 408)"
    status, _, body = response.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408"), response[:200]
    assert "UPLOAD_TIMEOUT_S" in json.loads(body)["detail"]
    assert 0.9 <= waited <= 3, waited
    assert b"\r\nconnection: close\r\n" in status.lower() + b"\r\n"  # RFC 9110 15.5.9
    assert rest == b"", rest
