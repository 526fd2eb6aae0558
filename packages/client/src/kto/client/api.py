"""Send images to the API and turn every answer, good or bad, into one result per file.

A busy API answers 503 with ``Retry-After``; the client waits that long (bounded) and tries
again, so a CI job rides out a short overload instead of failing. Nothing is retried forever:
the number of attempts and the longest single wait are both capped.
"""

from __future__ import annotations

import email.utils
import mimetypes
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kto.client.text import from_server
from kto.client.urls import redact_text, require_secure

RETRY_STATUSES = frozenset({429, 503})
DEFAULT_ATTEMPTS = 4
DEFAULT_MAX_RETRY_WAIT_S = 30.0
DEFAULT_BATCH_SIZE = 8
# Answers about one of the images (not about the request) that a batch call may give.
IMAGE_ERRORS = frozenset({413, 415, 422})


@dataclass
class Result:
    """What happened to one file. ``answer`` is the API's JSON body for it."""

    file: str
    status: int | None
    answer: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "ok": self.ok, "status": self.status}
        out.update(self.answer)
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries; waits as the server asks, never longer than ``max_wait_s``."""

    attempts: int = DEFAULT_ATTEMPTS
    max_wait_s: float = DEFAULT_MAX_RETRY_WAIT_S
    sleep: Callable[[float], None] = time.sleep

    def wait_for(self, response: httpx.Response | None, attempt: int) -> float:
        """Seconds before the next try: ``Retry-After`` if given, else 1, 2, 4... s."""
        asked = parse_retry_after(response.headers.get("Retry-After")) if response else None
        wait = asked if asked is not None else float(2 ** (attempt - 1))
        return min(max(wait, 0.0), self.max_wait_s)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Classifier:
    """Classifies files through ``/upload`` or ``/upload/batch`` of one API.

    ``api_url`` must be https unless its host is loopback or ``allow_insecure_http`` is set:
    every request carries the access token.
    """

    def __init__(
        self,
        http: httpx.Client,
        api_url: str,
        auth: httpx.Auth,
        *,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        require_secure(api_url, "The API URL", allow_insecure_http=allow_insecure_http)
        self._http = http
        self._base = api_url.rstrip("/")
        self._auth = auth
        self._retry = retry or RetryPolicy()

    def classify(
        self, paths: Sequence[Path], *, batch: bool = False, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[Result]:
        """One result per path, in order; unreadable files fail without a request."""
        results: dict[int, Result] = {}
        readable: list[tuple[int, Path, bytes]] = []
        for index, path in enumerate(paths):
            try:
                readable.append((index, path, path.read_bytes()))
            except OSError as exc:
                results[index] = Result(str(path), None, error=f"cannot read: {exc.strerror}")
        if batch:
            for chunk in _chunks(readable, max(1, batch_size)):
                for (index, _, _), result in zip(chunk, self._batch(chunk), strict=True):
                    results[index] = result
        else:
            for index, path, data in readable:
                results[index] = self._one(path, data)
        return [results[i] for i in range(len(paths))]

    def _one(self, path: Path, data: bytes) -> Result:
        response, error = self._post("/upload", [_part(path, data)])
        if response is None:
            return Result(str(path), None, error=error)
        return _result(str(path), response)

    def _batch(self, chunk: list[tuple[int, Path, bytes]]) -> list[Result]:
        response, error = self._post("/upload/batch", [_part(p, d) for _, p, d in chunk])
        if response is None:
            return [Result(str(p), None, error=error) for _, p, _ in chunk]
        if response.status_code == 200:
            answers = _json(response)
            if isinstance(answers, list) and len(answers) == len(chunk):
                return [
                    Result(str(p), 200, a if isinstance(a, dict) else {"value": a})
                    for (_, p, _), a in zip(chunk, answers, strict=True)
                ]
            error = "the API answered 200 with an unexpected body"
            return [Result(str(p), 200, error=error) for _, p, _ in chunk]
        if response.status_code in IMAGE_ERRORS and len(chunk) > 1:
            # One image spoils the whole batch: send each on its own to know which.
            return [self._one(p, d) for _, p, d in chunk]
        return [_result(str(p), response) for _, p, _ in chunk]

    def _post(
        self, route: str, parts: list[tuple[str, tuple[str, bytes, str]]]
    ) -> tuple[httpx.Response | None, str | None]:
        """POST with bounded retries on 429/503 and transport errors."""
        error: str | None = None
        for attempt in range(1, self._retry.attempts + 1):
            response: httpx.Response | None = None
            try:
                response = self._http.post(self._base + route, files=parts, auth=self._auth)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {from_server(redact_text(str(exc)))}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response, None
            if attempt == self._retry.attempts:
                break
            self._retry.sleep(self._retry.wait_for(response, attempt))
        return response, error


def _part(path: Path, data: bytes) -> tuple[str, tuple[str, bytes, str]]:
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return ("file", (path.name, data, content_type))


def _chunks(
    items: list[tuple[int, Path, bytes]], size: int
) -> Iterable[list[tuple[int, Path, bytes]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _result(file: str, response: httpx.Response) -> Result:
    body = _json(response)
    if response.status_code == 200 and isinstance(body, dict):
        return Result(file, 200, body)
    detail = body.get("detail") if isinstance(body, dict) else None
    message = from_server(detail if isinstance(detail, str) else response.reason_phrase)
    return Result(file, response.status_code, error=message or f"HTTP {response.status_code}")
