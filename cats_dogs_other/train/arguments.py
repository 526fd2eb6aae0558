"""The arguments of every ``python -m cats_dogs_other.train`` command, and the TrainConfig a
``train`` command line makes.

A training option whose argparse ``dest`` is a :class:`TrainConfig` field takes its default
from that field and reaches the config as parsed (:func:`config_option`); adding one is one
``config_option`` call in its group. The other options (switches such as ``--no-refit``, the
path defaults) are turned into fields by :func:`train_config`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cats_dogs_other.core.cli_help import EnvironmentHelpFormatter
from cats_dogs_other.train import paths
from cats_dogs_other.train.config import DEFAULTS, FIELDS, WEIGHTINGS, TrainConfig
from cats_dogs_other.train.network import BACKBONES
from cats_dogs_other.train.provenance import TRAIN_COMMAND, describe_run
from cats_dogs_other.train.versions import BUNDLED_MODEL, default_out, new_version

ENVIRONMENT = """\
environment variables:
  MLFLOW_TRACKING_URI    default of --tracking-uri: log the run and register the model there
  TF_INTRA_OP_THREADS    default of --threads
  TF_CPP_MIN_LOG_LEVEL   TensorFlow's C++ log level (default here: 2, warnings hidden)
  CDO_SHARED_DIR         where ../shared is, for the default data and weights paths
  CDO_CACHE_DIR          feature cache (default .cache/features in the repository)
  CDO_OOD_DIR            out-of-distribution images (default $XDG_CACHE_HOME/cats_dogs_other/ood)
"""
TRAIN_DESCRIPTION = (
    "Train the cats/dogs/other classifier on one or more labelled sources and write a NEW "
    "model folder (model.keras, its verified export model.onnx, metadata.json, metrics.json, "
    "plots, MODEL_CARD.md), calibrated on its calibration split. Other commands: 'promote DIR' "
    "(make DIR the bundled default), 'ood' (collect out-of-distribution images), 'export' "
    "(write model.onnx for an existing model folder), 'calibrate' (calibrate an existing model "
    "folder), 'gate' (champion and challenger), 'quantize' (write and judge model.int8.onnx)."
)
TTA = {"auto": (False, True), "on": (True,), "off": (False,)}
"""--tta -> the mirror-pass settings tried on the validation split."""

Group = argparse._ArgumentGroup


# --------------------------------------------------------------------------- shared pieces
def command_parser(command: str | None, description: str) -> argparse.ArgumentParser:
    """A parser with the commands' common prog, help layout and environment epilog."""
    return argparse.ArgumentParser(
        prog=f"{TRAIN_COMMAND} {command}" if command else TRAIN_COMMAND,
        description=description,
        epilog=ENVIRONMENT,
        formatter_class=EnvironmentHelpFormatter,
    )


def config_option(group: Group, field: str, *flags: str, **kwargs: Any) -> None:
    """An option that sets the TrainConfig field ``field``, defaulting to the field's default."""
    flags = flags or (f"--{field.replace('_', '-')}",)
    group.add_argument(*flags, dest=field, default=DEFAULTS[field], **kwargs)


def input_size(value: str) -> int:
    side = int(value)
    if not 32 <= side <= 1024:
        raise argparse.ArgumentTypeError("input size must be a side of 32..1024 pixels")
    return side


def fraction(value: str) -> float:
    f = float(value)
    if not 0 <= f < 1:
        raise argparse.ArgumentTypeError("a fraction must be in [0, 1)")
    return f


def names(value: str) -> tuple[str, ...]:
    """``a, b,c`` -> ``("a", "b", "c")``."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def integers(value: str) -> tuple[int, ...]:
    return tuple(int(x) for x in value.split(","))


def choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        items = names(value)
        if not items or any(v not in allowed for v in items):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)} (comma-separated)")
        return items

    return parse


# --------------------------------------------------------------------------- train
def train_parser() -> argparse.ArgumentParser:
    p = command_parser(None, TRAIN_DESCRIPTION)
    _data_options(p.add_argument_group("data and model"))
    _head_options(p.add_argument_group("head and rules (each chosen on held-out data)"))
    _training_options(p.add_argument_group("training"))
    _held_out_options(p.add_argument_group("held-out data"))
    _runtime_options(p.add_argument_group("runtime"))
    _identity_options(p.add_argument_group("model identity and MLflow"))
    return p


def _data_options(g: Group) -> None:
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
    _manifest_options(g)
    config_option(
        g,
        "backbone",
        choices=BACKBONES,
        help="'tiny' is a small random network for tests; needs no weights",
    )
    config_option(g, "input_size", type=input_size, metavar="N")
    config_option(
        g,
        "classes",
        type=names,
        help="class names in output order; labels match them case-insensitively",
    )
    config_option(g, "max_pixels", type=int, help=argparse.SUPPRESS)
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        help="model folder to create (default: models/<name>-<version>/); never an existing "
        "folder, never the bundled cats_dogs_other/model/ (see 'promote')",
    )


def _head_options(g: Group) -> None:
    config_option(
        g,
        "hidden_candidates",
        "--hidden",
        type=integers,
        metavar="HIDDEN",
        help="head shapes to try: 0 = linear softmax, N = one ReLU layer of N (default: 0,256)",
    )
    config_option(
        g,
        "weighting_candidates",
        "--weighting",
        type=choices(WEIGHTINGS),
        metavar="WEIGHTING",
        help="sample weightings to try: none, class (classes weigh the same), stratum (every "
        "source x class weighs the same); comma-separated, the first preferred on a tie "
        f"(default: {','.join(DEFAULTS['weighting_candidates'])})",
    )
    g.add_argument(
        "--tta",
        choices=tuple(TTA),
        default="auto",
        help="mirror test-time augmentation (average with the mirrored image; twice the CPU)",
    )
    g.add_argument(
        "--no-confidence-rule",
        action="store_true",
        help="do not try a min_confidence threshold (-> Other) on the calibration split",
    )
    g.add_argument(
        "--no-familiarity-gate",
        action="store_true",
        help="do not try the familiarity gate (an image far from every training cat and dog "
        "-> Other) on the validation + calibration splits",
    )
    config_option(g, "gate_prototypes", type=int, help="k-means centres the gate compares with")
    config_option(g, "min_gain", type=float, help=argparse.SUPPRESS)


def _training_options(g: Group) -> None:
    config_option(g, "seed", type=int)
    config_option(g, "epochs", type=int, help="head epochs (early stopping)")
    config_option(g, "batch_size", type=int)
    g.add_argument(
        "--no-refit",
        action="store_true",
        help="save the head trained on the training split only (default: train it again on "
        "train + validation + calibration once every choice is made)",
    )
    g.add_argument(
        "--no-fine-tune",
        action="store_true",
        help="keep the whole backbone frozen (default: fine-tune its last block on cached "
        "activations first, kept when it lowers the validation loss)",
    )
    config_option(g, "fine_tune_epochs", type=int, help="top-block epochs (early stopping)")
    config_option(g, "fine_tune_learning_rate", type=float, help="top-block AdamW learning rate")
    config_option(g, "fine_tune_weight_decay", type=float, help="top-block AdamW weight decay")
    config_option(g, "fine_tune_patience", type=int, help="top-block early-stopping patience")
    config_option(g, "learning_rate", type=float)
    config_option(g, "dropout", type=float)
    config_option(g, "l2", type=float)
    config_option(g, "patience", type=int, help="early-stopping patience (epochs)")
    config_option(
        g,
        "aug_passes",
        type=int,
        help="randomly augmented copies per image, besides the mirrored one (each costs one "
        "backbone pass per image on the first run; cached after)",
    )


def _held_out_options(g: Group) -> None:
    config_option(g, "val_fraction", "--val", "--val-fraction", type=fraction)
    config_option(
        g,
        "calibration_fraction",
        "--calibration",
        type=fraction,
        help="share of each source x class that calibrates the confidence rule",
    )
    config_option(g, "test_fraction", "--test", "--test-fraction", type=fraction)
    config_option(
        g,
        "cv_folds",
        type=int,
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


def _runtime_options(g: Group) -> None:
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


def _identity_options(g: Group) -> None:
    config_option(g, "name")
    g.add_argument(
        "--model-version", default=None, help="default: the UTC time of the run (YYYY.MM.DD.HHMMSS)"
    )
    g.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI; unset = no tracking)",
    )
    g.add_argument("--no-tracking", action="store_true")
    config_option(g, "experiment")
    config_option(
        g,
        "register_name",
        type=lambda v: v or None,
        help="registered model name ('' = do not register)",
    )


def train_config(args: argparse.Namespace, argv: Sequence[str]) -> TrainConfig:
    """The config a parsed ``train`` command line asks for; ``argv`` is kept as its provenance."""
    data = tuple(args.data or [paths.default_data_dir()])
    weights = args.weights if args.backbone == "mobilenet_v2" else None
    version = args.model_version or new_version()
    derived: dict[str, Any] = {
        "data": data,
        "out": args.out or default_out(args.name, version),
        "weights": weights,
        "version": version,
        "tta_candidates": TTA[args.tta],
        "confidence_rule": not args.no_confidence_rule,
        "familiarity_gate": not args.no_familiarity_gate,
        "refit": not args.no_refit,
        "fine_tune": not args.no_fine_tune,
        "cache_dir": None if args.no_cache else args.cache_dir,
        "ood_dir": None if args.no_ood else (args.ood_dir or paths.collected_ood_dir()),
        "progress": not args.quiet,
        "tracking_uri": None if args.no_tracking else (args.tracking_uri or None),
        "provenance": describe_run(data, weights, argv),
    }
    parsed = {k: v for k, v in vars(args).items() if k in FIELDS}
    return TrainConfig(**(parsed | derived))


def _manifest_options(g: Group) -> None:
    g.add_argument(
        "--manifest",
        type=Path,
        help="a dataset manifest (datasets/manifest.json): its sources and weights replace "
        "--data and --weights, each checked against its sha256 first",
    )
    g.add_argument(
        "--shared",
        type=Path,
        default=paths.shared_dir(),
        help="where the manifest's folder locations are (default: %(default)s)",
    )
    g.add_argument(
        "--location",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="fetch the manifest's source NAME from URL instead (its sha256 pin stays)",
    )
    g.add_argument("--weights-location", help="fetch the manifest's weights from this URL")
    g.add_argument(
        "--dataset-cache",
        type=Path,
        default=paths.default_dataset_cache(),
        help="where downloaded archives are unpacked, once (default: %(default)s)",
    )
    g.add_argument(
        "--champion",
        help="after training, the champion-and-challenger gate against this model folder or "
        "models:/NAME@champion (exit 3 when the new model is worse)",
    )
    g.add_argument(
        "--promote",
        action="store_true",
        help="when the gate passes, point the registered model's MLflow alias 'champion' at "
        "this run's version (needs --champion, MLflow and a manifest that is not partial)",
    )


# --------------------------------------------------------------------------- other commands
def promote_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "promote",
        "Make a trained model folder the bundled default (checked, then swapped in).",
    )
    p.add_argument("model", type=Path, help="the model folder a training run wrote")
    p.add_argument("--to", type=Path, default=BUNDLED_MODEL, help="default: %(default)s")
    return p


def ood_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "ood",
        "Collect out-of-distribution images (people, food, vehicles, objects, drawings...) "
        "from pictures shipped by Python packages and Debian packages (apt-get download + "
        "dpkg-deb -x into a temporary folder; nothing is installed).",
    )
    p.add_argument("--dest", type=Path, default=paths.default_ood_dir())
    p.add_argument("--no-debian", action="store_true", help="Python packages' images only")
    p.add_argument("--seed", type=int, default=0)
    return p


def export_parser(tolerance: float) -> argparse.ArgumentParser:
    p = command_parser(
        "export",
        "Export a model folder's model.keras to model.onnx (the API's default backend), "
        "verified against the Keras model on the held-out images listed in its metrics.json; "
        f"refused beyond a probability difference of {tolerance:g} or any changed argmax.",
    )
    p.add_argument("--model", type=Path, required=True, help="model folder (model.keras + "
                   "metadata.json)")  # fmt: skip
    p.add_argument(
        "--data",
        type=Path,
        default=paths.default_data_dir(),
        help="dataset holding the held-out files (default: %(default)s)",
    )
    p.add_argument(
        "--images",
        type=Path,
        action="append",
        default=[],
        help="another folder of images to verify on as well (repeatable)",
    )
    p.add_argument("--tolerance", type=float, default=tolerance)
    return p


def add_model_and_sources(p: argparse.ArgumentParser) -> None:
    """``--model`` (default: the bundled folder) and the ``--data`` sources it was trained on:
    the commands that rebuild a trained model's splits from its metrics.json."""
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="default: %(default)s")
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="a source the run was trained on, in the run's order (repeat for each)",
    )


def calibrate_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "calibrate",
        "Fit the served probabilities' calibration of a model folder on its calibration split "
        "and store it with the test split's drift references (metadata.json, metrics.json, "
        "MODEL_CARD.md; the model files are not touched). The splits are rebuilt from "
        "metrics.json and the --data folders the run was trained on.",
    )
    add_model_and_sources(p)
    p.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    return p


def gate_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "gate",
        "Champion and challenger: answer the test photos both runs held out with both models "
        "(through the wheel) and fail (exit 3) when the challenger is worse on any target. The "
        "table goes into the challenger's card and metrics.json, the MLflow run (--run-id) and "
        "$GITHUB_STEP_SUMMARY when set.",
    )
    p.add_argument("--model", type=Path, required=True, help="the challenger's model folder")
    p.add_argument(
        "--champion",
        default=str(BUNDLED_MODEL),
        help="a model folder or models:/NAME@champion (default: the bundled model)",
    )
    p.add_argument(
        "--data", type=Path, action="append", required=True, help="a source (repeat for each)"
    )
    p.add_argument("--run-id", help="the challenger's MLflow run, to log the table to")
    p.add_argument(
        "--set-alias",
        metavar="NAME/VERSION",
        help="when the challenger passes, point NAME's 'champion' alias at VERSION (explicit only)",
    )
    return p


def quantize_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "quantize",
        "Write model.int8.onnx beside a model folder's model.onnx (ONNX Runtime static QDQ, "
        "per channel, calibrated on training-split photos; head and familiarity gate in "
        "float32), choose its gate threshold again and judge it against the float32 model "
        "with the champion/challenger gate (metrics.json 'int8', MODEL_CARD.md).",
    )
    add_model_and_sources(p)
    p.add_argument("--photos", type=int, default=256, help="calibration photos (default: 256)")
    p.add_argument("--seed", type=int, default=0, help="which photos (default: 0)")
    p.add_argument(
        "--dry-run", action="store_true", help="print the card section; metrics and card untouched"
    )
    return p
