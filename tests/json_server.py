"""A standard-library HTTP server on a free loopback port serving fixed JSON documents.

Stands in for an issuer's discovery document and key set where a test wants real HTTP without
the development issuer: ``documents`` maps a path to its JSON body and is read at each request,
so a test can fill it once it knows the server's URL. Any other path answers 404. ``requests``,
when given, records every path asked for, in order.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cats_dogs_other.loopback import LOOPBACK


@contextmanager
def json_server(
    documents: Mapping[str, object], requests: list[str] | None = None
) -> Iterator[str]:
    """Serves ``documents`` until the block ends; yields ``http://127.0.0.1:PORT``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if requests is not None:
                requests.append(self.path)
            found = self.path in documents
            body = json.dumps(documents[self.path] if found else {}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
