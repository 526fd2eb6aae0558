"""Dataset archives served from an in-process loopback HTTP server, and manifests naming them."""

from __future__ import annotations

import hashlib
import json
import tarfile
import threading
import zipfile
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cats_dogs_other.train.dataset import DEFAULT_CLASSES, dataset_sha256, find_samples

LICENCE = "generated for the tests"


class ArchiveServer:
    """Serves ``root`` on 127.0.0.1 (an ephemeral port) and counts the GETs of each path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        counts = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                counts[self.path] += 1
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def list_sha256(folder: Path) -> str:
    """The pin of a source: the sha256 of its labelled file list."""
    samples, _ = find_samples(folder, DEFAULT_CLASSES, every_class=False)
    return dataset_sha256(samples, DEFAULT_CLASSES)


def pack_tar(folder: Path, dest: Path) -> Path:
    """A .tar.gz with one top-level folder, as ``tar czf x.tar.gz folder`` makes it."""
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return dest


def pack_zip(folder: Path, dest: Path) -> Path:
    """A .zip with the folder's contents at its top level."""
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return dest


def write_manifest(
    path: Path, sources: list[dict[str, Any]], shared: Path, weights: str, *, partial: bool = False
) -> Path:
    """``weights``: a location relative to ``shared``."""
    doc = {
        "partial": partial,
        "weights": {"location": weights, "sha256": file_sha256(shared / weights)},
        "sources": [{"licence": LICENCE, **s} for s in sources],
    }
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path
