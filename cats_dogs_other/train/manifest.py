"""The dataset manifest (docs/datasets.md): every source and the backbone weights, pinned by
sha256. Anything wrong is one :class:`ManifestError` before TensorFlow starts, and nothing is
written outside the cache."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from kto.inference.model import file_sha256
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from cats_dogs_other.train.dataset import DEFAULT_CLASSES, dataset_sha256, find_samples
from cats_dogs_other.train.errors import TrainingError

ARCHIVES = (".tar.gz", ".tgz", ".zip")
DOWNLOAD_TIMEOUT_S = 60
MAX_ARCHIVE_BYTES = 4 << 30
MAX_UNPACKED_BYTES = 16 << 30  # an archive unpacking to more is refused before it is unpacked


class ManifestError(TrainingError):
    """The manifest, or what it points at, is wrong; nothing was trained."""


def check_location(value: str, *, archive: bool) -> str:
    """A folder, an https:// URL (an archive's ends in one of ARCHIVES), http:// on loopback."""
    parts = urlsplit(value)
    if parts.scheme in ("", "file"):
        return value
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported location scheme {parts.scheme!r}")
    if parts.scheme == "http" and not _loopback(parts.hostname or ""):
        raise ValueError(f"{value} is plain http; only https:// (or loopback) is used")
    if archive and not parts.path.endswith(ARCHIVES):
        raise ValueError(f"an archive URL must end with one of {ARCHIVES}")
    return value


def _loopback(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    return False


Sha256 = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
Text = Annotated[str, Field(min_length=1)]


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True)
    name: Annotated[str, Field(pattern="^[^/]+$")]
    format: Literal["ecotag", "folders"]
    location: Annotated[Text, AfterValidator(lambda v: check_location(v, archive=True))]
    sha256: Sha256
    licence: Text
    archive_sha256: Sha256 | None = None


class Weights(BaseModel):
    model_config = Source.model_config
    location: Annotated[Text, AfterValidator(lambda v: check_location(v, archive=False))]
    sha256: Sha256


class Manifest(BaseModel):
    model_config = Source.model_config
    partial: bool = False  # sources the served model is trained on are missing: never promoted
    weights: Weights
    sources: Annotated[tuple[Source, ...], Field(min_length=1)]

    @field_validator("sources")
    @classmethod
    def _unique(cls, sources: tuple[Source, ...]) -> tuple[Source, ...]:
        names = [s.name for s in sources]
        if twice := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"the source name {twice!r} appears twice")
        return sources

    def record(self) -> dict[str, Any]:
        """What metrics.json keeps of the manifest."""
        kept = {"name", "location", "sha256", "licence"}
        return self.model_dump(mode="json", include={"partial": True, "sources": {"__all__": kept}})


def load_manifest(path: Path) -> Manifest:
    try:
        return _validated(Path(path).read_bytes(), str(path))
    except OSError as exc:
        raise ManifestError(f"cannot read the dataset manifest {path}: {exc}") from exc


def relocate(manifest: Manifest, locations: dict[str, str], weights: str | None) -> Manifest:
    """Some sources (and the weights) fetched from elsewhere; the pins stay the manifest's."""
    if unknown := sorted(set(locations) - {s.name for s in manifest.sources}):
        raise ManifestError(f"--location names no source of the manifest: {unknown}")
    doc = manifest.model_dump()
    for source in doc["sources"]:
        source["location"] = locations.get(source["name"], source["location"])
    doc["weights"]["location"] = weights or doc["weights"]["location"]
    return _validated(doc, "--location / --weights-location")


def _validated(doc: bytes | dict[str, Any], where: str) -> Manifest:
    try:
        if isinstance(doc, bytes):
            return Manifest.model_validate_json(doc)
        return Manifest.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(map(_problem, exc.errors(include_url=False)))
        raise ManifestError(f"{where}: {problems}") from exc


def _problem(error: Any) -> str:
    where = ".".join(map(str, error["loc"])) or "the manifest"
    if error["type"] == "missing":
        return f"{where} is missing"
    scalar = isinstance(error["input"], str | int | float) and error["type"] != "json_invalid"
    shown = f" = {error['input']!r}" if scalar else ""
    return f"{where}{shown}: {error['msg'].removeprefix('Value error, ')}"


def resolve(manifest: Manifest, shared: Path, cache: Path) -> tuple[tuple[Path, ...], Path]:
    """Local folders of every source and the weights file, each checked against its sha256."""
    data = tuple(
        _check_source(s, _fetch_archive(s, cache) if is_url(s.location) else _local(s, shared))
        for s in manifest.sources
    )
    weights = manifest.weights
    if is_url(weights.location):
        name = PurePosixPath(urlsplit(weights.location).path).name
        path = cache / "weights" / weights.sha256 / name
        if not path.is_file():
            _download(weights.location, path, weights.sha256)
        return data, path
    path = _local(weights, shared)
    if (digest := file_sha256(path)) != weights.sha256:
        raise ManifestError(f"weights {path}: sha256 {digest}, the manifest pins {weights.sha256}")
    return data, path


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


def _local(item: Source | Weights, shared: Path) -> Path:
    location = item.location
    path = shared / Path(urlsplit(location).path if location.startswith("file:") else location)
    if not path.exists():
        what = f"source {item.name!r}" if isinstance(item, Source) else "weights"
        hint = f"shared folder {shared}: `make train SHARED=DIR` or --shared DIR; docs/shared.md"
        raise ManifestError(f"{what}: {path} does not exist ({hint})")
    return path


def _check_source(source: Source, folder: Path) -> Path:
    # The folder's own name is the source's name in every figure (see sources.list_sources).
    if folder.name != source.name:
        raise ManifestError(f"source {source.name!r}: its folder {folder} must be named so")
    samples, fmt = find_samples(folder, DEFAULT_CLASSES, every_class=False)
    if fmt != source.format:
        raise ManifestError(f"source {source.name!r} is {fmt}, the manifest says {source.format}")
    if (digest := dataset_sha256(samples, DEFAULT_CLASSES)) != source.sha256:
        raise ManifestError(
            f"source {source.name!r} ({source.location}): its file list has sha256 {digest}, "
            f"the manifest pins {source.sha256}"
        )
    return folder


def _download(url: str, dest: Path, sha256: str | None) -> None:
    """Into ``dest`` only once its sha256 matches (a partial file never stays)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)  # noqa: S310 - checked
        with response, open(tmp, "wb") as fh:
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > MAX_ARCHIVE_BYTES:
                    raise ManifestError(f"{url}: larger than {MAX_ARCHIVE_BYTES >> 30} GiB")
                digest.update(chunk)
                fh.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ManifestError(f"{url}: sha256 {digest.hexdigest()}, the manifest pins {sha256}")
        tmp.replace(dest)
    except OSError as exc:
        raise ManifestError(f"cannot download {url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_archive(source: Source, cache: Path) -> Path:
    """``cache/datasets/<key>/<name>``: downloaded and unpacked once per URL and pins."""
    key = hashlib.sha256(f"{source.location}\0{source.sha256}".encode()).hexdigest()[:32]
    home = cache / "datasets" / key
    if (home / ".complete").is_file():
        return home / source.name
    cache.mkdir(parents=True, exist_ok=True)
    suffix = next(s for s in ARCHIVES if urlsplit(source.location).path.endswith(s))
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        archive = staging / f"archive{suffix}"
        _download(source.location, archive, source.archive_sha256)
        unpack(archive, staging / source.name)
        archive.unlink()
        _check_source(source, staging / source.name)
        shutil.rmtree(home, ignore_errors=True)
        home.parent.mkdir(parents=True, exist_ok=True)
        staging.replace(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (home / ".complete").write_text(source.location + "\n", encoding="utf-8")
    return home / source.name


def unpack(archive: Path, dest: Path) -> None:
    """Every member checked before anything is written: no ``..``, absolute path or link."""
    dest.mkdir(parents=True)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                zips = zf.infolist()
                members = [(i.filename, i.file_size, i.external_attr >> 28 == 0xA) for i in zips]
                _check_members(members, archive)
                zf.extractall(dest)  # noqa: S202 - every member checked above
        else:
            with tarfile.open(archive, "r:gz") as tf:
                tars = tf.getmembers()
                members = [(m.name, m.size, not (m.isfile() or m.isdir())) for m in tars]
                _check_members(members, archive)
                tf.extractall(dest, members=tars, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ManifestError(f"{archive.name} is not a readable archive: {exc}") from exc
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():  # one top-level folder: its contents
        top = entries[0].rename(dest.with_name(dest.name + ".top"))
        dest.rmdir()
        top.rename(dest)


def _check_members(members: list[tuple[str, int, bool]], archive: Path) -> None:
    """(name, size, is a link or device) of each member."""
    for name, _, link in members:
        parts = PurePosixPath(name.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts or (parts.parts and ":" in parts.parts[0]):
            raise ManifestError(f"{archive.name}: member {name!r} would unpack outside its folder")
        if link:
            raise ManifestError(f"{archive.name}: member {name!r} is a link or device; refused")
    if (total := sum(size for _, size, _ in members)) > MAX_UNPACKED_BYTES:
        raise ManifestError(
            f"{archive.name} unpacks to {total >> 20} MiB, over {MAX_UNPACKED_BYTES >> 30} GiB"
        )
