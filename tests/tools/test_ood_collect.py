"""Out-of-distribution pictures: collected from installed packages, loaded with their hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from cats_dogs_other.train.ood import load_ood
from tools.ood_collect import collect, main


def test_collect_from_python_packages(tmp_path: Path) -> None:
    """The bundled pictures only (no apt): known cats are kept apart from the OOD set."""
    dest = tmp_path / "ood"
    manifest = collect(dest, debian=False)
    files = [e["file"] for e in manifest["images"]]
    assert len(files) >= 20 and "people__matplotlib__grace_hopper.png" in files
    assert not any("chelsea" in f or "cat" in f.split("__")[2] for f in files)
    assert [e["expected"] for e in manifest["in_distribution"]] == ["Cat"]
    assert all(e["source"].startswith("python:") for e in manifest["images"])
    ood = load_ood(dest, (24, 24))
    assert ood.images.shape == (len(files), 24, 24, 3)
    assert ood.sha256 == manifest["sha256"]
    # a folder it did not make is never wiped
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not made by this command"):
        collect(tmp_path / "mine", debian=False)
    assert (tmp_path / "mine" / "holiday.jpg").read_bytes() == b"precious"


def test_the_command_collects_into_the_default_folder_and_refuses_a_foreign_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDO_OOD_DIR", str(tmp_path / "ood"))
    assert main(["--no-debian"]) == 0
    assert capsys.readouterr().out.endswith(f"out-of-distribution images in {tmp_path / 'ood'}\n")
    assert (tmp_path / "ood" / "manifest.json").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"precious")
    assert main(["--dest", str(tmp_path / "mine"), "--no-debian"]) == 2
    assert "not made by this command" in capsys.readouterr().err
