"""Command line: ``python -m cats_dogs_other.train [train|cv|ood] ...`` (``train`` is the default).

python -m cats_dogs_other.train --data DATA --weights W.weights.h5 --out cats_dogs_other/model
python -m cats_dogs_other.train cv --folds 5 --input-size 160
python -m cats_dogs_other.train ood --dest ~/.cache/cats_dogs_other/ood
python -m cats_dogs_other.train export --model cats_dogs_other/model
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cats_dogs_other.api.cli_help import EnvironmentHelpFormatter
from cats_dogs_other.train import paths
from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.model import BACKBONES

if TYPE_CHECKING:
    from cats_dogs_other.train.train import TrainConfig

log = logging.getLogger("cats_dogs_other.train")
COMMANDS = ("train", "cv", "ood", "export")
ENVIRONMENT = """\
environment variables:
  MLFLOW_TRACKING_URI    default of --tracking-uri: log the run and register the model there
  TF_INTRA_OP_THREADS    default of --threads
  TF_CPP_MIN_LOG_LEVEL   TensorFlow's C++ log level (default here: 2, warnings hidden)
  CDO_SHARED_DIR         where ../shared is, for the default data and weights paths
  CDO_OOD_DIR            out-of-distribution images (default $XDG_CACHE_HOME/cats_dogs_other/ood)
"""


def _input_size(value: str) -> int | None:
    if value == "auto":
        return None
    side = int(value)
    if not 32 <= side <= 1024:
        raise argparse.ArgumentTypeError("input size must be 'auto' or a side of 32..1024 pixels")
    return side


def _fraction(value: str) -> float:
    f = float(value)
    if not 0 <= f < 1:
        raise argparse.ArgumentTypeError("a fraction must be in [0, 1)")
    return f


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data and model")
    g.add_argument(
        "--data",
        type=Path,
        default=paths.default_data_dir(),
        help="labelled dataset: a folder with an Ecotag export (*.json with "
        "'annotations' + the images, e.g. in extract/) or one sub-folder per class "
        "(default: %(default)s; $CDO_SHARED_DIR moves ../shared)",
    )
    g.add_argument(
        "--weights",
        type=Path,
        default=paths.default_weights(),
        help="MobileNetV2 ImageNet backbone, Keras 3 .weights.h5 (default: %(default)s)",
    )
    g.add_argument(
        "--backbone",
        choices=BACKBONES,
        default="mobilenet_v2",
        help="'tiny' is a small random network for tests; needs no weights",
    )
    g.add_argument(
        "--input-size",
        type=_input_size,
        default=None,
        metavar="auto|N",
        help="square input side; 'auto' (default) cross-validates 160 and 224 and "
        "keeps the better (the faster when tied)",
    )
    g.add_argument(
        "--classes",
        default="Cat,Dog,Other",
        help="class names in output order; labels match them case-insensitively",
    )
    g.add_argument("--max-pixels", type=int, default=40_000_000, help=argparse.SUPPRESS)
    g = parser.add_argument_group("training")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--epochs", type=int, default=60, help="head epochs (early stopping)")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--learning-rate", type=float, default=1e-3)
    g.add_argument("--dropout", type=float, default=0.3)
    g.add_argument("--l2", type=float, default=1e-4)
    g.add_argument("--patience", type=int, default=10, help="early-stopping patience (epochs)")
    g.add_argument(
        "--aug-passes",
        type=int,
        default=4,
        help="augmented copies of every image whose features are cached",
    )
    g.add_argument(
        "--fine-tune-layers",
        type=int,
        default=0,
        help="unfreeze this many top layers of the backbone after the head (0 = off)",
    )
    g.add_argument("--fine-tune-epochs", type=int, default=5)
    g.add_argument("--fine-tune-learning-rate", type=float, default=1e-5)
    g.add_argument("--val", "--val-fraction", dest="val_fraction", type=_fraction, default=0.1)
    g.add_argument("--test", "--test-fraction", dest="test_fraction", type=_fraction, default=0.1)
    g = parser.add_argument_group("runtime")
    g.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("TF_INTRA_OP_THREADS", 0)),
        help="TensorFlow intra-op threads (default: $TF_INTRA_OP_THREADS or all cores)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        epilog=ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
        prog="python -m cats_dogs_other.train",
        description="Train the cats/dogs/other classifier and write a model directory "
        "(model.keras, its export model.onnx, metadata.json, metrics.json, plots, "
        "MODEL_CARD.md). Other commands: "
        "'cv' (cross-validation only), 'ood' (collect out-of-distribution images), 'export' "
        "(write model.onnx for an existing model folder); "
        "see `python -m cats_dogs_other.train cv --help`.",
    )
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    _common(p)
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--cv-folds",
        type=int,
        default=5,
        help="stratified k-fold cross-validation reported in metrics (0 = skip)",
    )
    g.add_argument(
        "--ood-dir",
        type=Path,
        default=None,
        help="out-of-distribution images (see the 'ood' command); default: "
        f"{paths.default_ood_dir()} ($CDO_OOD_DIR), collected on first use",
    )
    g.add_argument("--no-ood", action="store_true", help="skip OOD measurement and calibration")
    g.add_argument(
        "--no-decision-rule",
        action="store_true",
        help="store no min_confidence threshold in metadata.json",
    )
    g.add_argument(
        "--no-novelty-gate",
        action="store_true",
        help="no nearest-training-image gate inside the model",
    )
    g.add_argument(
        "--novelty-passes",
        type=int,
        default=4,
        help="augmented copies per training image kept as gate references (each adds ~5 KB "
        "per image to model.keras)",
    )
    g.add_argument(
        "--max-id-accuracy-loss",
        type=float,
        default=0.0,
        help="in-distribution accuracy the threshold may cost (default 0)",
    )
    g = p.add_argument_group("model identity and MLflow")
    g.add_argument("--name", default="cats-dogs-other")
    g.add_argument("--model-version", default="1.0.0")
    g.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI; unset = no tracking)",
    )
    g.add_argument("--no-tracking", action="store_true")
    g.add_argument("--experiment", default="cats-dogs-other")
    g.add_argument(
        "--register-name",
        default="cats-dogs-other",
        help="registered model name ('' = do not register)",
    )
    return p


def _cv_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        epilog=ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
        prog="python -m cats_dogs_other.train cv",
        description="Stratified k-fold cross-validation with the training pipeline; prints "
        "accuracy per fold and the backbone's speed for each input size.",
    )
    _common(p)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return p


def _ood_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        epilog=ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
        prog="python -m cats_dogs_other.train ood",
        description="Collect out-of-distribution images (people, food, vehicles, objects, "
        "drawings...) from pictures shipped by Python packages and Debian packages "
        "(apt-get download + dpkg-deb -x into a temporary folder; nothing is installed).",
    )
    p.add_argument("--dest", type=Path, default=paths.default_ood_dir())
    p.add_argument("--no-debian", action="store_true", help="Python packages' images only")
    p.add_argument("--seed", type=int, default=0)
    return p


def _config(args: argparse.Namespace, command: str, argv: Sequence[str]) -> TrainConfig:
    from cats_dogs_other.train.card import readme_paragraph
    from cats_dogs_other.train.train import TrainConfig

    weights = args.weights if args.backbone == "mobilenet_v2" else None
    extra = {
        "command": shlex.join(["python", "-m", "cats_dogs_other.train", *argv]),
        "data_source": readme_paragraph(args.data, "Source:"),
        "backbone_provenance": readme_paragraph(weights.parent, "Provenance:") if weights else None,
    }
    tracking = getattr(args, "tracking_uri", None) and not getattr(args, "no_tracking", False)
    return TrainConfig(
        data=args.data,
        out=getattr(args, "out", Path()),
        weights=weights,
        backbone=args.backbone,
        input_size=args.input_size,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        dropout=args.dropout,
        l2=args.l2,
        patience=args.patience,
        aug_passes=args.aug_passes,
        fine_tune_layers=args.fine_tune_layers,
        fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_learning_rate=args.fine_tune_learning_rate,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        cv_folds=args.folds if command == "cv" else args.cv_folds,
        ood_dir=None if command == "cv" else _ood_dir(args),
        decision_rule=command == "train" and not args.no_decision_rule,
        novelty_gate=command == "train" and not args.no_novelty_gate,
        novelty_passes=getattr(args, "novelty_passes", 4),
        max_id_accuracy_loss=getattr(args, "max_id_accuracy_loss", 0.0),
        classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
        name=getattr(args, "name", "cats-dogs-other"),
        version=getattr(args, "model_version", "1.0.0"),
        max_pixels=args.max_pixels,
        progress=not args.quiet,
        tracking_uri=args.tracking_uri if tracking else None,
        experiment=getattr(args, "experiment", "cats-dogs-other"),
        register_name=getattr(args, "register_name", None) or None,
        extra=extra,
    )


def _ood_dir(args: argparse.Namespace) -> Path | None:
    """The OOD folder to use, collecting the default one on first use."""
    from cats_dogs_other.train.ood import MANIFEST, collect

    if args.no_ood:
        return None
    if args.ood_dir is not None:
        return Path(args.ood_dir)
    default = paths.default_ood_dir()
    if not (default / MANIFEST).is_file():
        log.info("collecting out-of-distribution images into %s (first use)", default)
        collect(default)
    return default


def _setup(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing chatter from per-fold heads, not actionable
    if threads:
        from kto.inference import configure_threads

        try:
            configure_threads(intra_op=threads, inter_op=min(threads, 2))
        except RuntimeError:  # TensorFlow already running in this process (tests, notebooks)
            log.warning("--threads ignored: TensorFlow is already initialised in this process")


def _train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from cats_dogs_other.train.pipeline import run_training

    cfg = _config(args, "train", argv)
    if cfg.classes and cfg.fallback_class not in cfg.classes:
        cfg.fallback_class = cfg.classes[-1]
    result = run_training(cfg)
    m = result.metrics
    print(f"\nmodel written to {result.out}")
    print(f"  test accuracy (as served): {m['test']['accuracy']}  (n={m['test']['n']})")
    if m["cross_validation"]:
        cv = m["cross_validation"]
        print(f"  {cv['folds']}-fold CV accuracy: {cv['accuracy_mean']} {cv['fold_accuracies']}")
    if m["ood"]:
        held = m["ood"]["held_out"]
        print(
            f"  OOD held-out -> Other: {held['other_rate_without_rule']} classifier alone, "
            f"{held['other_rate_with_rule']} as served (gate {m['model']['novelty_gate']}, "
            f"decision {m['model']['decision']})"
        )
    if result.tracked:
        t = result.tracked
        print(f"  MLflow run {t.run_id}: {t.model_uri}")
        if t.registered_version:
            print(f"  registered: models:/{t.registered_name}/{t.registered_version}")
    return 0


def _cv(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from cats_dogs_other.train.pipeline import prepare

    cfg = _config(args, "cv", argv)
    sides = [cfg.input_size] if cfg.input_size else list(cfg.size_candidates)
    results = [prepare(cfg, side).summary(cfg.seed) for side in sides]
    for r in results:
        folds = ", ".join(f"{a:.4f}" for a in r["fold_accuracies"])
        print(
            f"{r['input_size']}x{r['input_size']}: {cfg.cv_folds}-fold CV accuracy "
            f"{r['accuracy_mean']:.4f} (std {r['accuracy_std']:.4f}) folds [{folds}]; backbone "
            f"{r['ms_single_image']} ms/image alone, {r['ms_per_image_batch32']} ms/image batched"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _ood(args: argparse.Namespace) -> int:
    from cats_dogs_other.train.ood import collect

    manifest = collect(args.dest, debian=not args.no_debian, seed=args.seed)
    print(f"{len(manifest['images'])} out-of-distribution images in {args.dest}")
    print(f"  + {len(manifest['in_distribution'])} known in-distribution checks")
    print(f"  set sha256 {manifest['sha256']}")
    return 0


def _export(argv: Sequence[str]) -> int:
    from cats_dogs_other.train.export import main as export_main

    _setup(0)
    try:
        return export_main(argv)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "train"
    if command == "export":
        return _export(argv)
    parser = {"train": _train_parser, "cv": _cv_parser, "ood": _ood_parser}[command]()
    args = parser.parse_args(argv)
    try:
        if command == "ood":
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            return _ood(args)
        _setup(args.threads)
        return _train(args, argv) if command == "train" else _cv(args, argv)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
