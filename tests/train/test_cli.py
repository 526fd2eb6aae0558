"""The command line's own answers: its help, and the errors a person can act on (exit 2)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from cats_dogs_other.train.cli import main, train_config, train_parser
from cats_dogs_other.train.config import DEFAULTS

from .conftest import TINY, PipelineRun, write_ecotag


def test_cli_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--weights", "--out", "--hidden", "--weighting", "--tta", "--val"):
        assert flag in text, flag
    for flag in ("--calibration", "--test", "--cache-dir", "--model-version", "--tracking-uri"):
        assert flag in text, flag


def test_cli_reports_missing_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_ecotag(tmp_path / "data", per_class=4)
    argv = ["--data", str(data), "--weights", str(tmp_path / "nope.weights.h5")]
    code = main([*argv, "--out", str(tmp_path / "m"), "--quiet", "--no-ood"])
    assert code == 2
    err = capsys.readouterr().err
    assert "backbone weights not found" in err and "nope.weights.h5" in err
    assert not (tmp_path / "m").exists()


def test_cli_reports_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_ecotag(tmp_path / "data", per_class=4)
    (data / "extract" / "dog_02.png").unlink()
    code = main(["--data", str(data), "--out", str(tmp_path / "m"), *TINY, "--no-ood"])
    assert code == 2
    assert "missing" in capsys.readouterr().err


def test_the_command_line_sets_the_config_it_names(tmp_path: Path) -> None:
    argv = ["--data", str(tmp_path), "--backbone", "tiny", "--hidden", "0,8"]
    argv += ["--weighting", "class", "--tta", "on", "--no-refit", "--no-confidence-rule"]
    argv += ["--val", "0.2", "--classes", "cat, dog,other", "--register-name", ""]
    argv += ["--no-cache", "--no-ood", "--no-tracking", "--model-version", "1.2.3"]
    argv += ["--no-fine-tune", "--fine-tune-epochs", "7", "--fine-tune-learning-rate", "1e-5"]
    cfg = train_config(train_parser().parse_args(argv), argv)
    assert not cfg.fine_tune and cfg.fine_tune_epochs == 7 and cfg.fine_tune_learning_rate == 1e-5
    assert cfg.hidden_candidates == (0, 8) and cfg.weighting_candidates == ("class",)
    assert cfg.tta_candidates == (True,) and not cfg.refit and not cfg.confidence_rule
    assert cfg.val_fraction == 0.2 and cfg.classes == ("cat", "dog", "other")
    assert cfg.register_name is None and cfg.cache_dir is None and cfg.ood_dir is None
    assert cfg.tracking_uri is None and cfg.weights is None and cfg.version == "1.2.3"
    assert cfg.out.name == "cats-dogs-other-1.2.3" and cfg.data == (tmp_path,)
    assert cfg.provenance.command == shlex.join(["python", "-m", "cats_dogs_other.train", *argv])


def test_options_left_out_keep_the_config_defaults() -> None:
    cfg = train_config(train_parser().parse_args([]), [])
    for name in ("seed", "epochs", "batch_size", "learning_rate", "dropout", "l2", "patience"):
        assert getattr(cfg, name) == DEFAULTS[name], name
    for name in ("val_fraction", "calibration_fraction", "test_fraction", "cv_folds"):
        assert getattr(cfg, name) == DEFAULTS[name], name
    for name in ("hidden_candidates", "weighting_candidates", "tta_candidates", "classes"):
        assert getattr(cfg, name) == DEFAULTS[name], name
    for name in ("fine_tune_epochs", "fine_tune_learning_rate", "fine_tune_weight_decay"):
        assert getattr(cfg, name) == DEFAULTS[name], name
    assert cfg.refit and cfg.confidence_rule and cfg.progress and cfg.fine_tune


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("promote", ("--to",)),
        ("export", ("--model", "--images", "--tolerance")),
        ("calibrate", ("--model", "--data", "--dry-run")),
        ("gate", ("--champion", "--run-id", "--set-alias")),
        ("quantize", ("--photos", "--seed", "--dry-run")),
    ],
)
def test_every_command_has_its_own_help(
    command: str, flags: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m cats_dogs_other.train {command} ")
    assert all(flag in text for flag in flags) and "CDO_SHARED_DIR" in text


@pytest.mark.parametrize("command", ["calibrate", "gate", "quantize"])
def test_the_commands_that_rebuild_splits_need_the_sources(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--model", "m"])
    assert info.value.code == 2
    assert "the following arguments are required: --data" in capsys.readouterr().err


def test_the_help_shows_each_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"--epochs EPOCHS default: {DEFAULTS['epochs']} " in text
    assert f"first source (0 = skip) (default: {DEFAULTS['cv_folds']}) " in text
    assert "--no-refit do not train the head again" in text  # a switch shows no default


def test_the_ood_collector_moved_to_tools(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ood", "--dest", "x"]) == 2
    assert "python -m tools.ood_collect" in capsys.readouterr().err


def test_promote_is_refused_before_any_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    assert main(["--promote", "--out", str(out), *TINY]) == 2
    assert "--promote needs --champion" in capsys.readouterr().err
    assert main(["--promote", "--champion", str(tmp_path), "--out", str(out), *TINY]) == 2
    assert "needs a dataset manifest that is not partial" in capsys.readouterr().err
    assert not out.exists()


def test_export_refuses_a_folder_that_is_no_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--model", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert f"{tmp_path} is not a model folder (no metadata.json)" in capsys.readouterr().err


def test_switches_and_environment_reach_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("CDO_OOD_DIR", str(tmp_path / "ood"))
    weights = tmp_path / "w.weights.h5"
    argv = ["--data", str(tmp_path), "--weights", str(weights), "--quiet", "--tta", "off"]
    argv += ["--no-cache", "--cache-dir", str(tmp_path / "c"), "--no-familiarity-gate"]
    cfg = train_config(train_parser().parse_args(argv), argv)
    assert cfg.weights == weights and cfg.tta_candidates == (False,) and not cfg.progress
    assert cfg.cache_dir is None and not cfg.familiarity_gate and cfg.fine_tune
    assert cfg.tracking_uri == "http://127.0.0.1:9" and cfg.ood_dir is None  # not collected yet
    (tmp_path / "ood").mkdir()
    (tmp_path / "ood" / "manifest.json").write_text("{}")
    cfg = train_config(train_parser().parse_args(["--cache-dir", str(tmp_path / "c")]), [])
    assert cfg.ood_dir == tmp_path / "ood" and cfg.cache_dir == tmp_path / "c"
    assert cfg.tta_candidates == (False, True) and cfg.out.parent.name == "models"
    cfg = train_config(train_parser().parse_args(["--ood-dir", "o", "--no-tracking"]), [])
    assert cfg.ood_dir == Path("o") and cfg.tracking_uri is None
    assert cfg.version.count(".") == 3 and cfg.out.name == f"cats-dogs-other-{cfg.version}"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--input-size", "16"], "input size must be a side of 32..1024 pixels"),
        (["--val", "1"], "a fraction must be in [0, 1)"),
        (["--weighting", "class,age"], "choose from none, class, stratum"),
        (["--tta", "maybe"], "invalid choice: 'maybe'"),
    ],
)
def test_a_bad_option_value_says_what_is_allowed(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        train_parser().parse_args(option)
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--location", "pets"], "--location 'pets': expected NAME=URL"),
        (["--location", "=https://x/p.zip"], "expected NAME=URL"),
        (["--data", "d"], "--manifest names the sources: drop --data"),
    ],
)
def test_a_manifest_run_refuses_options_it_cannot_use(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    assert main(["--manifest", str(tmp_path / "none.json"), *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_a_run_with_a_champion_is_gated_once_trained(
    pipeline_run: PipelineRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The session's run trained again (same manifest, seed and features) against itself."""
    run, out = pipeline_run, tmp_path / "challenger"
    argv = ["--manifest", str(run.manifest), "--shared", str(run.shared), "--no-tracking"]
    argv += ["--dataset-cache", str(run.dataset_cache), "--out", str(out), "--no-ood"]
    argv += ["--cache-dir", str(run.out.parent / "cache"), "--cv-folds", "0", "--hidden", "0"]
    argv += ["--weighting", "none,class", "--model-version", "3.1.5"]
    assert main([*argv, "--champion", str(run.out), *TINY]) == 0
    gate = json.loads((out / "metrics.json").read_text())["champion_gate"]
    assert gate["passed"] and "champion" in capsys.readouterr().out
