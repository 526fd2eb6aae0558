"""The Classifier against an API behind httpx.MockTransport: one result per file whatever the API
answers (odd bodies, image errors inside a batch, overload, no connection), and bounded retries."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from kto.client.api import Classifier, Result, RetryPolicy, parse_retry_after
from kto.client.errors import ConfigurationError

API = "https://api.test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16

Handler = Callable[[httpx.Request], httpx.Response]


def classifier(handler: Handler, waits: list[float], attempts: int = 3) -> Classifier:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    retry = RetryPolicy(attempts=attempts, max_wait_s=5.0, sleep=waits.append)
    return Classifier(http, API, httpx.BasicAuth("id", "secret"), retry=retry)


def files(tmp_path: Path, *names: str) -> list[Path]:
    for name in names:
        (tmp_path / name).write_bytes(PNG)
    return [tmp_path / name for name in names]


def parts(request: httpx.Request) -> int:
    return request.content.count(b'name="file"')


def test_a_batch_answer_is_split_into_one_result_per_file(tmp_path: Path) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(parts(request))
        return httpx.Response(200, json=[{"prediction": "Cat"}] * parts(request))

    paths = files(tmp_path, "a.png", "b.png", "c.png")
    results = classifier(handler, []).classify(paths, batch=True, batch_size=2)

    assert calls == [2, 1]
    assert [r.file for r in results] == [str(p) for p in paths]
    assert all(r.ok and r.answer == {"prediction": "Cat"} for r in results)


def test_a_batch_answer_of_the_wrong_shape_fails_each_file(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"prediction": "Cat"}])  # one answer for two files

    results = classifier(handler, []).classify(files(tmp_path, "a.png", "b.png"), batch=True)

    assert [(r.status, r.ok) for r in results] == [(200, False), (200, False)]
    assert all(r.error == "the API answered 200 with an unexpected body" for r in results)


def test_non_object_answers_in_a_batch_are_kept_as_values(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=["Cat", {"prediction": "Dog"}])

    results = classifier(handler, []).classify(files(tmp_path, "a.png", "b.png"), batch=True)

    assert [r.answer for r in results] == [{"value": "Cat"}, {"prediction": "Dog"}]


def test_an_image_error_in_a_batch_is_pinned_on_its_file(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/upload/batch":
            return httpx.Response(422, json={"detail": "one image is unreadable"})
        if b'filename="bad.png"' in request.content:
            return httpx.Response(422, json={"detail": "bad.png is not an image"})
        return httpx.Response(200, json={"prediction": "Dog"})

    results = classifier(handler, []).classify(files(tmp_path, "good.png", "bad.png"), batch=True)

    assert [(r.status, r.error) for r in results] == [
        (200, None),
        (422, "bad.png is not an image"),
    ]


def test_a_request_error_in_a_batch_fails_each_file_with_its_detail(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "the token has expired"})

    results = classifier(handler, []).classify(files(tmp_path, "a.png", "b.png"), batch=True)

    assert [(r.status, r.error) for r in results] == [(401, "the token has expired")] * 2


def test_an_answer_without_json_is_reported_by_its_status(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    [result] = classifier(handler, []).classify(files(tmp_path, "a.png"))

    assert (result.status, result.error, result.ok) == (502, "Bad Gateway", False)
    assert result.as_dict() == {
        "file": result.file,
        "ok": False,
        "status": 502,
        "error": "Bad Gateway",
    }


def test_an_overloaded_api_is_retried_as_it_asks_then_reported(tmp_path: Path) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503, headers={"Retry-After": "60"}, json={"detail": "busy"})

    waits: list[float] = []
    [result] = classifier(handler, waits, attempts=3).classify(files(tmp_path, "a.png"))

    assert len(sent) == 3
    assert waits == [5.0, 5.0]  # 60 s asked, capped at max_wait_s
    assert (result.status, result.error) == (503, "busy")


def test_connection_errors_in_a_batch_fail_each_file_after_backing_off(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    waits: list[float] = []
    results = classifier(handler, waits, attempts=3).classify(
        files(tmp_path, "a.png", "b.png"), batch=True
    )

    assert waits == [1.0, 2.0]
    assert [(r.status, r.error) for r in results] == [
        (None, "ConnectError: connection refused")
    ] * 2


def test_an_unreadable_file_fails_alone_without_a_request(tmp_path: Path) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=[{"prediction": "Other"}])

    [missing, present] = classifier(handler, []).classify(
        [tmp_path / "missing.png", *files(tmp_path, "b.png")], batch=True
    )

    assert missing == Result(str(tmp_path / "missing.png"), None, error=missing.error)
    assert missing.error == "cannot read: No such file or directory"
    assert present.ok and len(sent) == 1 and parts(sent[0]) == 1


def test_plain_http_to_a_remote_api_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="plain http to a host that is not loopback"):
        Classifier(httpx.Client(), "http://api.example", httpx.BasicAuth("id", "secret"))


@pytest.mark.parametrize("value", [None, "", "soon", "Mon, 99 Foo 2026 25:61:61 GMT"])
def test_a_retry_after_that_is_not_one_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_a_retry_after_date_counts_from_now_and_never_below_zero() -> None:
    now = 1_800_000_000.0
    later = email.utils.formatdate(now + 30, usegmt=True)
    earlier = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    assert parse_retry_after(earlier, now=now) == 0.0
    assert parse_retry_after(" 7 ") == 7.0
