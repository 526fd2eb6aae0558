"""Champion and challenger: two models answer the same held-out photos through the wheel; a
worse challenger ends the run non-zero with the table, wherever the table goes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cats_dogs_other.train.cli import main
from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.reporting.champion import (
    ALPHA,
    SMALL_N,
    check_promotable,
    common_test_files,
    compare,
    mcnemar_p_worse,
    refuse_unpromotable,
    resolve_champion,
)
from cats_dogs_other.train.results import Metrics
from cats_dogs_other.train.versions import BUNDLED_MODEL

from .conftest import PipelineRun


def test_mcnemar_is_the_exact_one_sided_binomial_tail() -> None:
    assert mcnemar_p_worse(0, 0) == 1.0
    assert mcnemar_p_worse(5, 0) == pytest.approx(1 / 32)
    assert mcnemar_p_worse(4, 0) == pytest.approx(1 / 16)  # four photos cannot fire at 0.05
    assert mcnemar_p_worse(6, 1) == pytest.approx(8 / 128)
    assert mcnemar_p_worse(1, 6) > 0.9


def test_the_rules_of_one_target() -> None:
    labels = [0] * 10
    assert compare("t", labels, labels, [0] * 9 + [1], None).passed  # one more mistake: allowed
    two_more = compare("t", labels, labels, [0] * 8 + [1, 1], None)
    assert not two_more.passed and "2 more mistakes" in two_more.failures[0]
    big = [0] * SMALL_N
    worse = compare("t", big, big, [1] * 6 + [0] * (SMALL_N - 6), None)
    assert worse.p_worse < ALPHA and "McNemar" in worse.failures[0]
    bar = compare("t", big, big, [1] + [0] * (SMALL_N - 1), 0.99)
    assert bar.failures == ("misses the bar 0.99 the champion meets",)
    assert not compare("t", [], [], [], None).passed  # nothing in common: nothing to judge


def _sources(run: PipelineRun) -> list[str]:
    return [arg for source in run.sources for arg in ("--data", str(source))]


def test_a_model_as_good_as_the_champion_passes(
    pipeline_run: PipelineRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    challenger = shutil.copytree(pipeline_run.out, tmp_path / "challenger")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    argv = ["gate", "--model", str(challenger), "--champion", str(pipeline_run.out)]
    assert main([*argv, *_sources(pipeline_run)]) == 0
    record = json.loads((challenger / "metrics.json").read_text())["champion_gate"]
    assert record["passed"] and record["targets"][0]["name"] == "all"
    assert record["targets"][0]["n"] == len(record_test_files(pipeline_run.out))
    assert "## Champion and challenger" in (challenger / "MODEL_CARD.md").read_text()
    assert "| all |" in summary.read_text()


def record_test_files(model: Path) -> list[str]:
    return list(json.loads((model / "metrics.json").read_text())["split"]["test_files"])


def test_a_worse_model_fails_with_the_table(
    pipeline_run: PipelineRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same network with Cat and Dog swapped in its metadata: every pet answer is wrong."""
    challenger = shutil.copytree(pipeline_run.out, tmp_path / "swapped")
    meta = json.loads((challenger / "metadata.json").read_text())
    meta["classes"] = ["Dog", "Cat", "Other"]
    (challenger / "metadata.json").write_text(json.dumps(meta))
    argv = ["gate", "--model", str(challenger), "--champion", str(pipeline_run.out)]
    assert main([*argv, *_sources(pipeline_run)]) == 3
    out = capsys.readouterr()
    assert "FAILS" in out.out and "more mistakes" in out.out and "not promoted" in out.err
    assert not json.loads((challenger / "metrics.json").read_text())["champion_gate"]["passed"]
    assert main(["promote", str(challenger), "--to", str(tmp_path / "bundled")]) == 2
    assert "failed the champion-and-challenger gate" in capsys.readouterr().err


def test_an_unloadable_champion_fails_the_run(
    pipeline_run: PipelineRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    champion = shutil.copytree(pipeline_run.out, tmp_path / "broken")
    for name in ("model.keras", "model.onnx"):
        (champion / name).write_bytes(b"not a model")
    argv = ["gate", "--model", str(pipeline_run.out), "--champion", str(champion)]
    assert main([*argv, *_sources(pipeline_run)]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_a_partial_run_is_never_promoted(
    pipeline_run: PipelineRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = shutil.copytree(pipeline_run.out, tmp_path / "partial")
    metrics = json.loads((partial / "metrics.json").read_text())
    assert metrics["manifest"]["partial"] is False  # the session's run records its manifest
    metrics["manifest"]["partial"] = True
    (partial / "metrics.json").write_text(json.dumps(metrics))
    argv = ["gate", "--model", str(partial), "--champion", str(pipeline_run.out)]
    assert main([*argv, *_sources(pipeline_run), "--set-alias", "m/2"]) == 2
    assert main(["promote", str(partial), "--to", str(tmp_path / "bundled")]) == 2
    assert capsys.readouterr().err.count("partial dataset manifest") == 2
    assert not (tmp_path / "bundled").exists()


def _folder_with(tmp_path: Path, **sections: object) -> Path:
    """A model folder holding the bundled metrics.json with ``sections`` set."""
    tmp_path.mkdir(exist_ok=True)
    metrics = json.loads((BUNDLED_MODEL / "metrics.json").read_text())
    (tmp_path / "metrics.json").write_text(json.dumps({**metrics, **sections}))
    return tmp_path


def test_the_recorded_verdict_decides_promotion(tmp_path: Path) -> None:
    refuse_unpromotable(BUNDLED_MODEL)  # no gate verdict, no manifest recorded: promotable
    refuse_unpromotable(tmp_path)  # no metrics.json: nothing recorded to refuse it on
    failed = _folder_with(tmp_path / "failed", champion_gate={"passed": False, "targets": []})
    with pytest.raises(TrainingError, match="failed the champion-and-challenger gate"):
        refuse_unpromotable(failed)
    partial = _folder_with(tmp_path / "partial", manifest={"partial": True})
    with pytest.raises(TrainingError, match="partial dataset manifest"):
        refuse_unpromotable(partial)


def test_the_held_out_files_both_runs_list_are_the_photos(tmp_path: Path) -> None:
    files = list(Metrics.read(BUNDLED_MODEL).split.test_files)
    older = _folder_with(tmp_path / "older", split={**_split(), "test_files": files[::2]})
    assert common_test_files(older, BUNDLED_MODEL) == files[::2]
    assert common_test_files(BUNDLED_MODEL, older) == files[::2]


def _split() -> dict[str, object]:
    split: dict[str, object] = json.loads((BUNDLED_MODEL / "metrics.json").read_text())["split"]
    return split


def test_a_target_with_a_bar_is_the_cards(tmp_path: Path) -> None:
    """The bars are the card's targets: the course set's 98.5% for its cats and dogs."""
    labels = [0] * 100
    champion, challenger = [0] * 99 + [1], [0] * 98 + [1, 1]
    target = compare("cats_dogs_other Cat", labels, champion, challenger, 0.985)
    assert target.failures == ("misses the bar 0.985 the champion meets",)
    assert compare("x", labels, champion, challenger, None).passed


def test_a_promotion_without_a_registry_or_version_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for alias in ("cats-dogs-other", "cats-dogs-other/", "/3"):
        with pytest.raises(TrainingError, match=f"--set-alias '{alias}': expected NAME/VERSION"):
            check_promotable(BUNDLED_MODEL, alias)
    with pytest.raises(TrainingError, match="--set-alias needs MLFLOW_TRACKING_URI"):
        check_promotable(BUNDLED_MODEL, "cats-dogs-other/3")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    check_promotable(BUNDLED_MODEL, "cats-dogs-other/3")  # nothing contacted yet
    failed = _folder_with(tmp_path / "failed", champion_gate={"passed": False, "targets": []})
    with pytest.raises(TrainingError, match="failed the champion-and-challenger gate"):
        check_promotable(failed, "cats-dogs-other/3")  # the recorded verdict first


def test_a_champion_folder_must_be_a_trained_model(tmp_path: Path) -> None:
    assert resolve_champion(str(BUNDLED_MODEL), tmp_path) == (BUNDLED_MODEL, str(BUNDLED_MODEL))
    (tmp_path / "empty").mkdir()
    for spec in (tmp_path / "empty", tmp_path / "nowhere"):
        with pytest.raises(TrainingError, match=r"not a model folder with metrics\.json"):
            resolve_champion(str(spec), tmp_path)
