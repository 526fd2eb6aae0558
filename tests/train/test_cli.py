"""The command line's own answers: its help, and the errors a person can act on (exit 2)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cats_dogs_other.train.arguments import train_config, train_parser
from cats_dogs_other.train.cli import main
from cats_dogs_other.train.config import DEFAULTS

from .conftest import TINY, write_ecotag


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
