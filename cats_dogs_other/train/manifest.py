"""The dataset manifest: every training source and the backbone weights, each pinned by sha256.

A source's ``location`` is a folder (relative to the shared folder, ``../shared``) or an
``https://`` archive (``.tar.gz`` / ``.tgz`` / ``.zip``) downloaded once into a cache and
unpacked there; ``http://`` is accepted only on loopback (tests). Every source is pinned by the
sha256 of its labelled file list (names, labels and contents: what ``metrics.json`` records as
the source's ``sha256``), so any archive of the same files passes; ``archive_sha256`` pins an
archive's bytes as well, checked before it is unpacked. A run may point a source elsewhere
(``--location NAME=URL``, as the train workflow does); the pins stay the manifest's. Anything
wrong (unknown format, duplicate name, plain http elsewhere, a checksum mismatch, a missing
source, an archive member with ``..``, an absolute path or a link) is one :class:`ManifestError`
before any training starts, and nothing is written outside the cache. ``partial: true`` says the
manifest lacks sources the full model is trained on: such a run trains and reports but never
registers or promotes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from cats_dogs_other.train.dataset import DEFAULT_CLASSES, dataset_sha256, find_samples
from cats_dogs_other.train.errors import TrainingError

FORMATS = ("ecotag", "folders")
ARCHIVES = (".tar.gz", ".tgz", ".zip")
DOWNLOAD_TIMEOUT_S = 60
MAX_ARCHIVE_BYTES = 4 << 30
MAX_UNPACKED_BYTES = 16 << 30
"""An archive whose members add up to more is refused before anything is unpacked."""


class ManifestError(TrainingError):
    """The manifest, or what it points at, is wrong; nothing was trained."""


@dataclass(frozen=True)
class Source:
    name: str
    format: str
    location: str
    sha256: str
    licence: str
    archive_sha256: str | None = None


@dataclass(frozen=True)
class Manifest:
    path: Path
    sources: tuple[Source, ...]
    weights_location: str
    weights_sha256: str
    partial: bool


def load_manifest(path: Path) -> Manifest:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read the dataset manifest {path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), list) or not doc["sources"]:
        raise ManifestError(f"{path}: a manifest is an object with a non-empty 'sources' list")
    sources = tuple(_source(s, path) for s in doc["sources"])
    names = [s.name for s in sources]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ManifestError(f"{path}: the source name {duplicate!r} appears twice")
    weights = doc.get("weights")
    if not isinstance(weights, dict):
        raise ManifestError(f"{path}: 'weights' must give the backbone's location and sha256")
    partial = doc.get("partial", False)
    if not isinstance(partial, bool):
        raise ManifestError(f"{path}: 'partial' must be true or false")
    location = _location(weights.get("location"), f"{path}: weights", archive=False)
    return Manifest(Path(path), sources, location, _sha(weights.get("sha256"), path), partial)


def _source(entry: Any, path: Path) -> Source:
    if not isinstance(entry, dict):
        raise ManifestError(f"{path}: each source is an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ManifestError(f"{path}: a source needs a 'name' (no '/')")
    fmt = entry.get("format")
    if fmt not in FORMATS:
        raise ManifestError(f"{path}: source {name!r} has format {fmt!r}, not one of {FORMATS}")
    archive = entry.get("archive_sha256")
    licence = entry.get("licence")
    if not isinstance(licence, str) or not licence:
        raise ManifestError(f"{path}: source {name!r} needs a 'licence' note")
    return Source(
        name=name,
        format=fmt,
        location=_location(entry.get("location"), f"{path}: source {name!r}", archive=True),
        sha256=_sha(entry.get("sha256"), path),
        licence=licence,
        archive_sha256=None if archive is None else _sha(archive, path),
    )


def _sha(value: Any, path: Path) -> str:
    if not isinstance(value, str) or len(value) != 64 or set(value) - set("0123456789abcdef"):
        raise ManifestError(f"{path}: {value!r} is not a lowercase hex sha256")
    return value


def _location(value: Any, where: str, *, archive: bool) -> str:
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: 'location' must be a folder or an https:// URL")
    parts = urlsplit(value)
    if parts.scheme in ("", "file"):
        return value
    if parts.scheme == "http" and not _loopback(parts.hostname or ""):
        raise ManifestError(f"{where}: {value} is plain http; only https:// (or loopback) is used")
    if parts.scheme not in ("http", "https"):
        raise ManifestError(f"{where}: unsupported location scheme {parts.scheme!r}")
    if archive and not parts.path.endswith(ARCHIVES):
        raise ManifestError(f"{where}: an archive URL must end with one of {ARCHIVES}")
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


@dataclass(frozen=True)
class Resolved:
    data: tuple[Path, ...]
    weights: Path
    partial: bool
    sources: tuple[Source, ...]

    def record(self) -> dict[str, Any]:
        """What metrics.json keeps of the manifest."""
        return {
            "partial": self.partial,
            "sources": [
                {"name": s.name, "location": s.location, "sha256": s.sha256, "licence": s.licence}
                for s in self.sources
            ],
        }


def relocate(manifest: Manifest, locations: dict[str, str], weights: str | None) -> Manifest:
    """The manifest with some sources (and the weights) fetched from elsewhere; pins unchanged."""
    unknown = sorted(set(locations) - {s.name for s in manifest.sources})
    if unknown:
        raise ManifestError(f"--location names no source of {manifest.path}: {unknown}")
    sources = tuple(
        replace(s, location=_location(locations[s.name], f"--location {s.name}", archive=True))
        if s.name in locations
        else s
        for s in manifest.sources
    )
    where = manifest.weights_location
    where = where if weights is None else _location(weights, "--weights-location", archive=False)
    return replace(manifest, sources=sources, weights_location=where)


def resolve(manifest: Manifest, shared: Path, cache: Path) -> Resolved:
    """Local folders of every source and the weights file, each checked against its sha256."""
    data = []
    for source in manifest.sources:
        folder = _fetch_archive(source, cache) if is_url(source.location) else None
        folder = folder or _local(source.location, shared, f"source {source.name!r}")
        _check_source(source, folder)
        data.append(folder)
    weights = _weights(manifest, shared, cache)
    return Resolved(tuple(data), weights, manifest.partial, manifest.sources)


def _local(location: str, shared: Path, what: str) -> Path:
    path = Path(urlsplit(location).path if location.startswith("file:") else location)
    path = path if path.is_absolute() else shared / path
    if not path.exists():
        raise ManifestError(f"{what}: {path} does not exist")
    return path


def _check_source(source: Source, folder: Path) -> None:
    # The folder's own name is the source's name in every figure (see sources.list_sources).
    if folder.name != source.name:
        raise ManifestError(f"source {source.name!r}: its folder {folder} must be named so")
    samples, fmt = find_samples(folder, DEFAULT_CLASSES, every_class=False)
    if fmt != source.format:
        raise ManifestError(f"source {source.name!r} is {fmt}, the manifest says {source.format}")
    digest = dataset_sha256(samples, DEFAULT_CLASSES)
    if digest != source.sha256:
        raise ManifestError(
            f"source {source.name!r} ({source.location}): its file list has sha256 {digest}, "
            f"the manifest pins {source.sha256}"
        )


def _weights(manifest: Manifest, shared: Path, cache: Path) -> Path:
    location = manifest.weights_location
    if is_url(location):
        path = (
            cache
            / "weights"
            / manifest.weights_sha256
            / PurePosixPath(urlsplit(location).path).name
        )
        if not path.is_file():
            _download(location, path, manifest.weights_sha256)
    else:
        path = _local(location, shared, "weights")
        digest = file_sha256(path)
        if digest != manifest.weights_sha256:
            raise ManifestError(
                f"weights {path}: sha256 {digest}, the manifest pins {manifest.weights_sha256}"
            )
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, dest: Path, sha256: str | None) -> None:
    """Into ``dest`` only once its sha256 matches (a partial file never stays)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        with _open(url) as response, open(tmp, "wb") as fh:
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > MAX_ARCHIVE_BYTES:
                    raise ManifestError(f"{url}: larger than {MAX_ARCHIVE_BYTES >> 30} GiB")
                digest.update(chunk)
                fh.write(chunk)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ManifestError(f"cannot download {url}: {exc}") from exc
    except ManifestError:
        tmp.unlink(missing_ok=True)
        raise
    if sha256 is not None and digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise ManifestError(f"{url}: sha256 {digest.hexdigest()}, the manifest pins {sha256}")
    tmp.replace(dest)


def _open(url: str) -> Any:
    """``url``'s scheme was checked by :func:`_location` (https, or http on loopback)."""
    return urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)  # noqa: S310


def _fetch_archive(source: Source, cache: Path) -> Path:
    """``cache/datasets/<key>/<name>``: downloaded and unpacked once per URL and pins."""
    key = hashlib.sha256(f"{source.location}\0{source.sha256}".encode()).hexdigest()[:32]
    home = cache / "datasets" / key
    folder = home / source.name
    if (home / ".complete").is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    suffix = next(s for s in ARCHIVES if urlsplit(source.location).path.endswith(s))
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        archive = staging / f"archive{suffix}"
        _download(source.location, archive, source.archive_sha256)
        unpack(archive, staging / source.name)
        archive.unlink()
        _check_source(source, staging / source.name)
        if home.exists():
            shutil.rmtree(home)
        home.parent.mkdir(parents=True, exist_ok=True)
        staging.replace(home)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    (home / ".complete").write_text(source.location + "\n", encoding="utf-8")
    return folder


def unpack(archive: Path, dest: Path) -> None:
    """Every member checked before anything is written: no ``..``, absolute path or link."""
    dest.mkdir(parents=True)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(info.filename, archive, link=(info.external_attr >> 28) == 0xA)
                _check_size(sum(i.file_size for i in zf.infolist()), archive)
                zf.extractall(dest)  # noqa: S202 - every member checked above
        else:
            with tarfile.open(archive, "r:gz") as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member(m.name, archive, link=not (m.isfile() or m.isdir()))
                _check_size(sum(m.size for m in members), archive)
                tf.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ManifestError(f"{archive.name} is not a readable archive: {exc}") from exc
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():  # one top-level folder: its contents
        top = entries[0].rename(dest.with_name(dest.name + ".top"))
        dest.rmdir()
        top.rename(dest)


def _check_size(total: int, archive: Path) -> None:
    if total > MAX_UNPACKED_BYTES:
        raise ManifestError(
            f"{archive.name} unpacks to {total >> 20} MiB, over {MAX_UNPACKED_BYTES >> 30} GiB"
        )


def _check_member(name: str, archive: Path, *, link: bool) -> None:
    parts = PurePosixPath(name.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts or (parts.parts and ":" in parts.parts[0]):
        raise ManifestError(f"{archive.name}: member {name!r} would unpack outside its folder")
    if link:
        raise ManifestError(f"{archive.name}: member {name!r} is a link or device; refused")
