"""Command line: ``python -m cats_dogs_other.train [train|promote|ood] ...`` (``train`` is the
default).

python -m cats_dogs_other.train --data A --data B --weights W.weights.h5
python -m cats_dogs_other.train promote models/cats-dogs-other-2026.12.01.093000
python -m cats_dogs_other.train ood --dest ~/.cache/cats_dogs_other/ood
python -m cats_dogs_other.train export --model cats_dogs_other/model
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kto.inference import DEFAULT_MAX_PIXELS

from cats_dogs_other.api.cli_help import EnvironmentHelpFormatter
from cats_dogs_other.train import paths
from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.model import BACKBONES

if TYPE_CHECKING:
    from cats_dogs_other.train.train import TrainConfig

log = logging.getLogger("cats_dogs_other.train")
COMMANDS = ("train", "promote", "ood", "export")
ENVIRONMENT = """\
environment variables:
  MLFLOW_TRACKING_URI    default of --tracking-uri: log the run and register the model there
  TF_INTRA_OP_THREADS    default of --threads
  TF_CPP_MIN_LOG_LEVEL   TensorFlow's C++ log level (default here: 2, warnings hidden)
  CDO_SHARED_DIR         where ../shared is, for the default data and weights paths
  CDO_CACHE_DIR          feature cache (default .cache/features in the repository)
  CDO_OOD_DIR            out-of-distribution images (default $XDG_CACHE_HOME/cats_dogs_other/ood)
"""


def _input_size(value: str) -> int:
    side = int(value)
    if not 32 <= side <= 1024:
        raise argparse.ArgumentTypeError("input size must be a side of 32..1024 pixels")
    return side


def _fraction(value: str) -> float:
    f = float(value)
    if not 0 <= f < 1:
        raise argparse.ArgumentTypeError("a fraction must be in [0, 1)")
    return f


def _choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        items = tuple(v.strip() for v in value.split(",") if v.strip())
        bad = [v for v in items if v not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)} (comma-separated)")
        return items

    return parse


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        epilog=ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
        prog="python -m cats_dogs_other.train",
        description="Train the cats/dogs/other classifier on one or more labelled sources and "
        "write a NEW model folder (model.keras, its verified export model.onnx, metadata.json, "
        "metrics.json, plots, MODEL_CARD.md). Other commands: 'promote DIR' (make DIR the bundled "
        "default), 'ood' (collect out-of-distribution images), 'export' (write model.onnx for an "
        "existing model folder).",
    )
    g = p.add_argument_group("data and model")
    g.add_argument(
        "--data",
        type=Path,
        action="append",
        help="a labelled source: a folder with an Ecotag export (*.json with 'annotations' + "
        "the images, e.g. in extract/) or one sub-folder per class. Repeat for several sources; "
        f"the first is cross-validated (default: {paths.default_data_dir()})",
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
    g.add_argument("--input-size", type=_input_size, default=224, metavar="N")
    g.add_argument(
        "--classes",
        default="Cat,Dog,Other",
        help="class names in output order; labels match them case-insensitively",
    )
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=argparse.SUPPRESS)
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        help="model folder to create (default: models/<name>-<version>/); never an existing "
        "folder, never the bundled cats_dogs_other/model/ (see 'promote')",
    )
    g = p.add_argument_group("head and rules (each chosen on held-out data)")
    g.add_argument(
        "--hidden",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        default=(0, 256),
        help="head shapes to try: 0 = linear softmax, N = one ReLU layer of N (default: 0,256)",
    )
    g.add_argument(
        "--weighting",
        type=_choices(("none", "class", "stratum")),
        default=("none", "class"),
        help="sample weightings to try: none, class (classes weigh the same), stratum (every "
        "source x class weighs the same); comma-separated (default: none,class)",
    )
    g.add_argument(
        "--tta",
        choices=("auto", "on", "off"),
        default="auto",
        help="mirror test-time augmentation (average with the mirrored image; twice the CPU)",
    )
    g.add_argument(
        "--no-confidence-rule",
        action="store_true",
        help="do not try a min_confidence threshold (-> Other) on the calibration split",
    )
    g.add_argument("--min-gain", type=float, default=0.01, help=argparse.SUPPRESS)
    g = p.add_argument_group("training")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--epochs", type=int, default=60, help="head epochs (early stopping)")
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument(
        "--no-refit",
        action="store_true",
        help="save the head trained on the training split only (default: train it again on "
        "train + validation + calibration once every choice is made)",
    )
    g.add_argument("--learning-rate", type=float, default=1e-3)
    g.add_argument("--dropout", type=float, default=0.3)
    g.add_argument("--l2", type=float, default=1e-4)
    g.add_argument("--patience", type=int, default=8, help="early-stopping patience (epochs)")
    g.add_argument(
        "--aug-passes",
        type=int,
        default=0,
        help="randomly augmented copies per image, besides the mirrored one (each costs one "
        "backbone pass per image on the first run; cached after)",
    )
    g = p.add_argument_group("held-out data")
    g.add_argument("--val", "--val-fraction", dest="val_fraction", type=_fraction, default=0.1)
    g.add_argument(
        "--calibration",
        dest="calibration_fraction",
        type=_fraction,
        default=0.1,
        help="share of each source x class that calibrates the confidence rule",
    )
    g.add_argument("--test", "--test-fraction", dest="test_fraction", type=_fraction, default=0.2)
    g.add_argument(
        "--cv-folds",
        type=int,
        default=5,
        help="stratified k-fold cross-validation on the first source (0 = skip)",
    )
    g.add_argument(
        "--ood-dir",
        type=Path,
        default=None,
        help="extra out-of-distribution images to measure (see the 'ood' command); default: "
        f"{paths.default_ood_dir()} when it has been collected",
    )
    g.add_argument("--no-ood", action="store_true", help="skip the OOD measurement")
    g = p.add_argument_group("runtime")
    g.add_argument(
        "--cache-dir",
        type=Path,
        default=paths.default_cache_dir(),
        help="feature cache (default: %(default)s; $CDO_CACHE_DIR)",
    )
    g.add_argument("--no-cache", action="store_true", help="keep features in memory only")
    g.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("TF_INTRA_OP_THREADS", 0)),
        help="TensorFlow intra-op threads (default: $TF_INTRA_OP_THREADS or all cores)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("model identity and MLflow")
    g.add_argument("--name", default="cats-dogs-other")
    g.add_argument(
        "--model-version", default=None, help="default: the UTC time of the run (YYYY.MM.DD.HHMMSS)"
    )
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


def _promote_parser() -> argparse.ArgumentParser:
    from cats_dogs_other.train.versions import BUNDLED_MODEL

    p = argparse.ArgumentParser(
        epilog=ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
        prog="python -m cats_dogs_other.train promote",
        description="Make a trained model folder the bundled default (checked, then swapped in).",
    )
    p.add_argument("model", type=Path, help="the model folder a training run wrote")
    p.add_argument("--to", type=Path, default=BUNDLED_MODEL, help="default: %(default)s")
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


def _config(args: argparse.Namespace, argv: Sequence[str]) -> TrainConfig:
    from cats_dogs_other.train.card import readme_paragraph
    from cats_dogs_other.train.train import TrainConfig
    from cats_dogs_other.train.versions import default_out, new_version

    weights = args.weights if args.backbone == "mobilenet_v2" else None
    data = tuple(args.data or [paths.default_data_dir()])
    version = args.model_version or new_version()
    extra = {
        "command": shlex.join(["python", "-m", "cats_dogs_other.train", *argv]),
        "data_sources": {
            d.resolve().name: readme_paragraph(d, "Source:")
            or readme_paragraph(d, "Provenance:")
            or readme_paragraph(d, "Licence:")
            for d in data
        },
        "backbone_provenance": readme_paragraph(weights.parent, "Provenance:") if weights else None,
    }
    tracking = args.tracking_uri and not args.no_tracking
    tta = {"auto": (False, True), "on": (True,), "off": (False,)}[args.tta]
    return TrainConfig(
        data=data,
        out=args.out or default_out(args.name, version),
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
        val_fraction=args.val_fraction,
        calibration_fraction=args.calibration_fraction,
        test_fraction=args.test_fraction,
        cv_folds=args.cv_folds,
        hidden_candidates=args.hidden,
        weighting_candidates=args.weighting,
        tta_candidates=tta,
        confidence_rule=not args.no_confidence_rule,
        refit=not args.no_refit,
        min_gain=args.min_gain,
        cache_dir=None if args.no_cache else args.cache_dir,
        ood_dir=_ood_dir(args),
        classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
        name=args.name,
        version=version,
        max_pixels=args.max_pixels,
        progress=not args.quiet,
        tracking_uri=args.tracking_uri if tracking else None,
        experiment=args.experiment,
        register_name=args.register_name or None,
        extra=extra,
    )


def _ood_dir(args: argparse.Namespace) -> Path | None:
    """The OOD folder to measure: the one given, else the default one if collected."""
    from cats_dogs_other.train.ood import MANIFEST

    if args.no_ood:
        return None
    if args.ood_dir is not None:
        return Path(args.ood_dir)
    default = paths.default_ood_dir()
    return default if (default / MANIFEST).is_file() else None


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


def _print_summary(result: object) -> None:
    from cats_dogs_other.train.stats import format_proportion

    m = result.metrics  # type: ignore[attr-defined]
    print(f"\nmodel {m['model']['name']} {m['model']['version']} written to {result.out}")  # type: ignore[attr-defined]
    test = m["test"]
    print(f"  test, all sources: {format_proportion(test['all']['accuracy'])}")
    for name, sec in test["per_source"].items():
        print(f"  test, {name}: {format_proportion(sec['accuracy'])}")
    if test["other_held_out_classes"]["n"]:
        other = format_proportion(test["other_held_out_classes"])
        print(f"  held-out ImageNet classes answered Other: {other}")
    if m["cross_validation"]:
        cv = m["cross_validation"]
        print(
            f"  {cv['folds']}-fold CV on {cv['source']}: {format_proportion(cv['pooled'])}, "
            f"folds {cv['fold_accuracies']}"
        )
    model = m["model"]
    print(
        f"  head: {model['head']}, mirror pass {model['mirror_test_time_augmentation']}, "
        f"decision {model['decision']}"
    )
    tracked = getattr(result, "tracked", None)
    if tracked:
        print(f"  MLflow run {tracked.run_id}: {tracked.model_uri}")
        if tracked.registered_version:
            print(f"  registered: models:/{tracked.registered_name}/{tracked.registered_version}")
    print(f"  make it the bundled default: make promote MODEL={result.out}")  # type: ignore[attr-defined]


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
    parser = {"train": _train_parser, "promote": _promote_parser, "ood": _ood_parser}[command]()
    args = parser.parse_args(argv)
    try:
        if command == "ood":
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            from cats_dogs_other.train.ood import collect

            manifest = collect(args.dest, debian=not args.no_debian, seed=args.seed)
            print(f"{len(manifest['images'])} out-of-distribution images in {args.dest}")
            return 0
        if command == "promote":
            from cats_dogs_other.train.versions import promote

            promote(args.model, args.to)
            return 0
        _setup(args.threads)
        from cats_dogs_other.train.pipeline import run_training

        _print_summary(run_training(_config(args, argv)))
        return 0
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
