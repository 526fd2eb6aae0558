"""The bookkeeping around a run: where its inputs are by default, the new folder it writes, the
promotion that alone replaces the bundled model, and the provenance its card quotes."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cats_dogs_other.train import paths
from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.provenance import describe_run, readme_paragraph
from cats_dogs_other.train.versions import (
    BUNDLED_MODEL,
    REQUIRED_FILES,
    default_out,
    new_version,
    prepare_out,
    promote,
)


def test_the_environment_moves_every_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDO_SHARED_DIR", str(tmp_path / "shared"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CDO_CACHE_DIR", str(tmp_path / "features"))
    monkeypatch.delenv("CDO_OOD_DIR")
    assert paths.default_data_dir() == tmp_path / "shared" / "datasets" / "cats_dogs_other"
    assert paths.default_weights() == tmp_path / "shared" / "weights" / paths.WEIGHTS_FILENAME
    assert paths.default_dataset_cache() == tmp_path / "xdg" / "cats_dogs_other" / "datasets"
    assert paths.default_ood_dir() == tmp_path / "xdg" / "cats_dogs_other" / "ood"
    assert paths.default_cache_dir() == tmp_path / "features"
    assert paths.collected_ood_dir() is None  # nothing collected yet
    paths.default_ood_dir().mkdir(parents=True)
    (paths.default_ood_dir() / paths.OOD_MANIFEST).write_text("{}")
    assert paths.collected_ood_dir() == paths.default_ood_dir()
    monkeypatch.setenv("CDO_SHARED_DIR", "")  # empty: the default, beside the repository
    assert paths.shared_dir() == paths.REPO_ROOT.parent / "shared"


def test_every_run_gets_a_new_folder_never_the_bundled_one(tmp_path: Path) -> None:
    version = new_version(datetime(2026, 12, 1, 9, 30, 0, tzinfo=UTC))
    assert version == "2026.12.01.093000"
    assert default_out("m", version) == paths.REPO_ROOT / "models" / "m-2026.12.01.093000"
    with pytest.raises(TrainingError, match="the bundled default model"):
        prepare_out(BUNDLED_MODEL)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "model.keras").write_bytes(b"x")
    with pytest.raises(TrainingError, match="already exists and is not empty"):
        prepare_out(tmp_path / "used")
    (tmp_path / "empty").mkdir()
    assert prepare_out(tmp_path / "empty") == tmp_path / "empty"
    assert prepare_out(tmp_path / "new") == tmp_path / "new"


def test_promote_refuses_what_is_not_a_complete_other_model(tmp_path: Path) -> None:
    target = tmp_path / "bundled"
    with pytest.raises(TrainingError, match="is not a model folder"):
        promote(tmp_path / "nothing", target)
    with pytest.raises(TrainingError, match="already the bundled model"):
        promote(tmp_path, tmp_path)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.keras").write_bytes(b"x")
    with pytest.raises(TrainingError, match=", ".join(REQUIRED_FILES[1:]) + " missing"):
        promote(tmp_path / "half", target)
    assert not target.exists()


def test_the_provenance_quotes_each_readme(tmp_path: Path) -> None:
    source, weights = tmp_path / "pets", tmp_path / "weights"
    source.mkdir()
    weights.mkdir()
    (source / "README.md").write_text(
        "# Pets\n\nLicence: CC-BY.\n\nSource: a shelter's\n  photos. Checked: 12 blurred.\n"
    )
    (weights / "README.md").write_text("Provenance: Google's checkpoint.\n")
    assert readme_paragraph(source, "Source:", "Licence:") == "a shelter's photos."
    assert readme_paragraph(source, "Provenance:", "Licence:") == "CC-BY."
    assert readme_paragraph(weights, "Source:") is None and readme_paragraph(None, "x") is None
    argv = ["--data", str(source), "--name", "a b"]
    run = describe_run([source, tmp_path / "bare"], weights / "w.h5", argv)
    assert run.command == shlex.join(["python", "-m", "cats_dogs_other.train", *argv])
    assert run.data_sources == {"pets": "a shelter's photos.", "bare": None}
    assert run.backbone == "Google's checkpoint."
    assert describe_run([source], None, []).backbone is None
