"""Bounded multipart reading: the body is counted as it arrives, so an oversized upload is
refused with 413 whether Content-Length is honest, wrong or absent (chunked), and before the
server has buffered more than the limit.

Starlette's own form parser buffers files without a size limit, hence this thin layer over
python-multipart's streaming parser. Only parts named ``file`` are kept; other fields are
counted against the body limit and dropped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from cats_dogs_other.api.errors import (
    PayloadTooLargeError,
    UnsupportedMediaError,
    UploadError,
    UploadTimeoutError,
)

FILE_FIELD = "file"
# Room for the multipart framing around a file of exactly MAX_UPLOAD_BYTES.
FRAMING_ALLOWANCE = 16 * 1024


class MalformedBodyError(UploadError):
    status_code = 400


class MissingFileError(UploadError):
    """No part named ``file``: 422 like FastAPI's own missing-field answer."""


@dataclass
class _Collector:
    """python-multipart callbacks that keep the bytes of each ``file`` part, within limits."""

    max_files: int
    max_file_bytes: int
    files: list[bytearray] = field(default_factory=list)
    ended: bool = False
    _header_name: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _disposition: bytes = b""
    _current: bytearray | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._disposition, self._current = b"", None

    def _header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") != FILE_FIELD.encode():
            return
        if len(self.files) >= self.max_files:
            raise UploadError(
                f"Too many files: at most {self.max_files} per request.", part=len(self.files)
            )
        self._current = bytearray()
        self.files.append(self._current)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None:
            return
        self._current.extend(data[start:end])
        if len(self._current) > self.max_file_bytes:
            raise PayloadTooLargeError(
                f"File {len(self.files) - 1} is larger than {self.max_file_bytes} bytes.",
                part=len(self.files) - 1,
            )

    def _end(self) -> None:
        self.ended = True


async def read_files(
    request: Request,
    *,
    max_files: int,
    max_file_bytes: int,
    max_body_bytes: int,
    timeout_s: float,
) -> list[bytes]:
    """The ``file`` parts of a multipart/form-data body, in request order; the whole body must
    arrive within ``timeout_s``."""
    boundary = _boundary(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body_bytes:
        raise PayloadTooLargeError(_too_large(max_files, max_file_bytes, max_body_bytes))
    collector = _Collector(max_files=max_files, max_file_bytes=max_file_bytes)
    received = 0
    try:
        parser = MultipartParser(boundary, callbacks=collector.callbacks())  # type: ignore[arg-type]
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_body_bytes:
                    raise PayloadTooLargeError(
                        _too_large(max_files, max_file_bytes, max_body_bytes)
                    )
                parser.write(chunk)
    except TimeoutError:
        raise UploadTimeoutError(
            f"The request body did not arrive within {timeout_s:g} s (UPLOAD_TIMEOUT_S); "
            "send it again over a faster connection."
        ) from None
    except FormParserError as exc:
        raise MalformedBodyError(f"The multipart body is malformed: {exc}") from None
    except (ValueError, LookupError, RecursionError) as exc:  # any other parser failure
        raise MalformedBodyError(
            f"The multipart body is malformed ({type(exc).__name__})."
        ) from None
    if not collector.ended:
        raise MalformedBodyError("The multipart body ended before its closing boundary.")
    if not collector.files:
        raise MissingFileError(f"The form has no '{FILE_FIELD}' part holding an image.")
    return [bytes(f) for f in collector.files]


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaError(
            f"Send the image as multipart/form-data with a field named '{FILE_FIELD}'."
        )
    return boundary


def _too_large(max_files: int, max_file_bytes: int, max_body_bytes: int) -> str:
    """Names the limits a client can act on; the framing allowance is not one of them."""
    per_image = f"{max_file_bytes} bytes per image (MAX_UPLOAD_BYTES)"
    if max_files == 1:
        return f"The upload is larger than the limit of {per_image}."
    return (
        f"The request body is larger than the limit of {max_body_bytes} bytes per batch "
        f"(MAX_BATCH_BYTES), with at most {per_image}."
    )
