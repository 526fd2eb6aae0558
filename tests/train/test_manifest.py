"""The dataset manifest: sources fetched as archives from a loopback server, verified, cached
once; every bad manifest or archive is one clear error and nothing is trained or written
outside the cache."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cats_dogs_other.train.cli import main
from cats_dogs_other.train.manifest import ManifestError, load_manifest, relocate, resolve
from cats_dogs_other.train.paths import REPO_ROOT

from .archives import (
    LICENCE,
    ArchiveServer,
    file_sha256,
    list_sha256,
    pack_tar,
    pack_zip,
    write_manifest,
)
from .conftest import TINY, write_folders


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    root = tmp_path / "shared"
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "w.h5").write_bytes(b"weights")
    write_folders(root / "datasets" / "pets", per_class=2)
    return root


def _manifest(tmp_path: Path, shared: Path, sources: list[dict[str, Any]], **kw: Any) -> Path:
    return write_manifest(tmp_path / "m.json", sources, shared, "weights/w.h5", **kw)


def _source(name: str, location: str, folder: Path) -> dict[str, Any]:
    return {"name": name, "format": "folders", "location": location, "sha256": list_sha256(folder)}


def test_an_archive_is_downloaded_verified_and_unpacked_once(
    tmp_path: Path, shared: Path, archive_server: ArchiveServer
) -> None:
    pets = shared / "datasets" / "pets"
    tar = pack_tar(pets, archive_server.root / "pets-once.tar.gz")
    source = _source("pets", archive_server.url(tar.name), pets)
    manifest = load_manifest(_manifest(tmp_path, shared, [source]))
    cache = tmp_path / "cache"
    (data, weights), (again, _) = resolve(manifest, shared, cache), resolve(manifest, shared, cache)
    assert data == again and data[0].name == "pets"
    assert data[0].is_relative_to(cache) and list_sha256(data[0]) == source["sha256"]
    assert archive_server.requests[f"/{tar.name}"] == 1
    assert weights == shared / "weights" / "w.h5" and not manifest.partial
    kept = {k: source[k] for k in ("name", "location", "sha256")}
    assert manifest.record() == {"partial": False, "sources": [kept | {"licence": LICENCE}]}


def test_a_zip_of_other_files_is_refused(
    tmp_path: Path, shared: Path, archive_server: ArchiveServer
) -> None:
    pets = shared / "datasets" / "pets"
    source = _source("pets", archive_server.url("pets-changed.zip"), pets)
    changed = tmp_path / "changed"
    shutil.copytree(pets, changed)
    next((changed / "Cat").iterdir()).write_bytes(b"not that image")
    pack_zip(changed, archive_server.root / "pets-changed.zip")
    manifest = load_manifest(_manifest(tmp_path, shared, [source]))
    with pytest.raises(ManifestError, match="file list has sha256"):
        resolve(manifest, shared, tmp_path / "cache")
    assert not (tmp_path / "cache" / "datasets").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


def test_an_archive_checksum_mismatch_is_refused_before_unpacking(
    tmp_path: Path, shared: Path, archive_server: ArchiveServer
) -> None:
    pets = shared / "datasets" / "pets"
    pack_zip(pets, archive_server.root / "pets-pinned.zip")
    source = {**_source("pets", archive_server.url("pets-pinned.zip"), pets)}
    source["archive_sha256"] = "0" * 64
    manifest = load_manifest(_manifest(tmp_path, shared, [source]))
    with pytest.raises(ManifestError, match="the manifest pins " + "0" * 64):
        resolve(manifest, shared, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


def _evil_zip(path: Path, name: str) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("Cat/ok.png", b"x")
        zf.writestr(name, b"escaped")


def _evil_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(member, io.BytesIO(data))


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 3
    return info


@pytest.mark.parametrize(
    ("archive", "make", "message"),
    [
        ("slip.zip", lambda p: _evil_zip(p, "../../escaped.txt"), "outside its folder"),
        ("abs.zip", lambda p: _evil_zip(p, "/tmp/escaped.txt"), "outside its folder"),
        ("slip.tar.gz", lambda p: _evil_tar(p, _file("a/../../escaped.txt"), b"bad"), "outside"),
        ("abs.tar.gz", lambda p: _evil_tar(p, _file("/escaped.txt"), b"bad"), "outside"),
        ("link.tar.gz", lambda p: _evil_tar(p, _symlink("Cat/x", "/etc/passwd")), "link"),
    ],
)
def test_archive_members_outside_their_folder_are_refused(
    tmp_path: Path, shared: Path, archive_server: ArchiveServer, archive: str, make: Any,
    message: str,
) -> None:  # fmt: skip
    make(archive_server.root / archive)
    source = _source("pets", archive_server.url(archive), shared / "datasets" / "pets")
    manifest = load_manifest(_manifest(tmp_path, shared, [source]))
    with pytest.raises(ManifestError, match=message):
        resolve(manifest, shared, tmp_path / "cache")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["sources"][0].update(format="parquet"), "format = 'parquet'"),
        (lambda d: d["sources"].append(dict(d["sources"][0])), "appears twice"),
        (lambda d: d["sources"][0].update(location="http://example.com/p.zip"), "plain http"),
        (lambda d: d["sources"][0].update(location="ftp://127.0.0.1/p.zip"), "scheme"),
        (lambda d: d["sources"][0].update(location="https://h.example/p.rar"), "must end"),
        (lambda d: d["sources"][0].update(sha256="abc"), r"sources\.0\.sha256 = 'abc'"),
        (lambda d: d["sources"][0].pop("licence"), "sources.0.licence is missing"),
        (lambda d: d.update(partial="yes"), "partial = 'yes'"),
        (lambda d: d.pop("weights"), "weights is missing"),
        (lambda d: d.update(sources=[]), "sources"),
        (lambda d: d["sources"][0].update(name="a/b"), "name = 'a/b'"),
    ],
)
def test_a_bad_manifest_is_one_clear_error(
    tmp_path: Path, shared: Path, change: Any, message: str
) -> None:
    path = _manifest(tmp_path, shared, [_source("pets", "datasets/pets", shared / "datasets/pets")])
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_missing_sources_and_wrong_weights_are_refused(tmp_path: Path, shared: Path) -> None:
    pets = shared / "datasets" / "pets"
    path = _manifest(tmp_path, shared, [_source("pets", "datasets/pets", pets)])
    manifest = load_manifest(path)
    assert resolve(manifest, shared, tmp_path / "cache")[0] == (pets,)
    with pytest.raises(ManifestError, match="does not exist"):
        resolve(relocate(manifest, {"pets": "datasets/gone/pets"}, None), shared, tmp_path)
    with pytest.raises(ManifestError, match="names no source"):
        relocate(manifest, {"cats": "datasets/pets"}, None)
    (shared / "weights" / "w.h5").write_bytes(b"other weights")
    with pytest.raises(ManifestError, match=r"weights .* the manifest pins"):
        resolve(manifest, shared, tmp_path / "cache")


def test_a_bad_manifest_trains_nothing(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _source("pets", "http://203.0.113.9/pets.zip", shared / "datasets" / "pets")
    path = _manifest(tmp_path, shared, [source])
    out = tmp_path / "model"
    assert main(["--manifest", str(path), "--shared", str(shared), "--out", str(out), *TINY]) == 2
    assert "plain http" in capsys.readouterr().err and not out.exists()
    both = ["--manifest", str(path), "--data", str(shared), "--out", str(out), *TINY]
    assert main(both) == 2
    assert "drop --data" in capsys.readouterr().err and not out.exists()


def test_the_committed_manifests_pin_the_shared_sources(shared_data: tuple[Path, Path]) -> None:
    full = load_manifest(REPO_ROOT / "datasets" / "manifest.json")
    course = load_manifest(REPO_ROOT / "datasets" / "course-only.json")
    assert not full.partial and course.partial
    assert [s.name for s in full.sources] == ["cats_dogs_other", "pets_breeds", "imagenet_samples"]
    assert course.sources[0] == full.sources[0] and course.weights.sha256 == full.weights.sha256
    weights = shared_data[1]
    data, resolved = resolve(full, weights.parents[1], weights.parents[1] / "unused-cache")
    assert [d.name for d in data] == [s.name for s in full.sources]
    assert file_sha256(resolved) == full.weights.sha256


def test_a_partial_manifest_cannot_promote(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pets = shared / "datasets" / "pets"
    path = _manifest(tmp_path, shared, [_source("pets", "datasets/pets", pets)], partial=True)
    out = tmp_path / "model"
    argv = ["--manifest", str(path), "--shared", str(shared), "--out", str(out)]
    argv += ["--champion", str(tmp_path), "--promote", "--tracking-uri", "http://127.0.0.1:9"]
    assert main([*argv, *TINY]) == 2
    assert "never promoted" in capsys.readouterr().err and not out.exists()


def test_an_archive_too_large_once_unpacked_is_refused(
    tmp_path: Path, shared: Path, archive_server: ArchiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cats_dogs_other.train import manifest as module

    pets = shared / "datasets" / "pets"
    pack_zip(pets, archive_server.root / "pets-big.zip")
    monkeypatch.setattr(module, "MAX_UNPACKED_BYTES", 100)  # the photos are larger than that
    source = _source("pets", archive_server.url("pets-big.zip"), pets)
    with pytest.raises(ManifestError, match="unpacks to"):
        resolve(load_manifest(_manifest(tmp_path, shared, [source])), shared, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


def test_weights_from_a_url_are_downloaded_once_and_pinned(
    tmp_path: Path, shared: Path, archive_server: ArchiveServer
) -> None:
    (archive_server.root / "w-once.h5").write_bytes(b"weights")
    pets = shared / "datasets" / "pets"
    manifest = load_manifest(_manifest(tmp_path, shared, [_source("pets", "datasets/pets", pets)]))
    moved = relocate(manifest, {}, archive_server.url("w-once.h5"))
    assert moved.weights.sha256 == manifest.weights.sha256 and moved.sources == manifest.sources
    cache = tmp_path / "cache"
    _, weights = resolve(moved, shared, cache)
    assert resolve(moved, shared, cache)[1] == weights
    assert weights == cache / "weights" / manifest.weights.sha256 / "w-once.h5"
    assert weights.read_bytes() == b"weights" and archive_server.requests["/w-once.h5"] == 1
    (archive_server.root / "w-other.h5").write_bytes(b"other weights")
    with pytest.raises(ManifestError, match="the manifest pins"):
        resolve(relocate(manifest, {}, archive_server.url("w-other.h5")), shared, cache)
    assert not list(cache.rglob("w-other.h5*"))
    with pytest.raises(
        ManifestError, match=r"--weights-location: weights\.location = 'http://example\.com/w\.h5'"
    ):
        relocate(manifest, {}, "http://example.com/w.h5")


def test_a_source_folder_must_carry_its_name_and_format(tmp_path: Path, shared: Path) -> None:
    pets = shared / "datasets" / "pets"
    wrong_name = _source("cats", "datasets/pets", pets)
    with pytest.raises(ManifestError, match="must be named so"):
        resolve(load_manifest(_manifest(tmp_path, shared, [wrong_name])), shared, tmp_path)
    wrong_format = {**_source("pets", "datasets/pets", pets), "format": "ecotag"}
    with pytest.raises(ManifestError, match="is folders, the manifest says ecotag"):
        resolve(load_manifest(_manifest(tmp_path, shared, [wrong_format])), shared, tmp_path)


def test_an_unreadable_manifest_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read the dataset manifest"):
        load_manifest(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ManifestError, match=r"bad\.json: the manifest: Invalid JSON"):
        load_manifest(tmp_path / "bad.json")


def test_the_command_line_refuses_a_bad_location_and_promotion_without_mlflow(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _manifest(tmp_path, shared, [_source("pets", "datasets/pets", shared / "datasets/pets")])
    out = tmp_path / "model"
    argv = ["--manifest", str(path), "--shared", str(shared), "--out", str(out), *TINY]
    assert main([*argv, "--location", "pets"]) == 2
    assert "--location 'pets': expected NAME=URL" in capsys.readouterr().err
    assert main([*argv, "--champion", str(tmp_path), "--promote", "--no-tracking"]) == 2
    assert "--promote needs MLflow tracking (MLFLOW_TRACKING_URI)" in capsys.readouterr().err
    assert not out.exists()
