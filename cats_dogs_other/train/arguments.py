"""The parser of each ``python -m cats_dogs_other.train`` command, and the TrainConfig of a
``train`` command line: an option whose ``dest`` is a TrainConfig field takes that field's
default and reaches the config as parsed; :func:`train_config` derives the rest."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

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
TTA = {"auto": (False, True), "on": (True,), "off": (False,)}
"""--tta -> the mirror-pass settings tried on the validation split."""
Group = argparse._ArgumentGroup
ArgParser = argparse.ArgumentParser
T = TypeVar("T", int, float)


class HelpFormatter(EnvironmentHelpFormatter):
    """Every option that takes a value shows its default (with or without a help text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS) or "%(" in text:
            return text
        return f"{text} (default: %(default)s)"


def command_parser(command: str | None, description: str, sources: bool = False) -> ArgParser:
    """``sources``: the command rebuilds a trained model's splits from its metrics.json."""
    prog = f"{TRAIN_COMMAND} {command}" if command else TRAIN_COMMAND
    p = ArgParser(prog, description=description, epilog=ENVIRONMENT, formatter_class=HelpFormatter)
    if sources:
        p.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="a model folder")
        data = "a source the run was trained on, in the run's order (repeat for each)"
        p.add_argument("--data", type=Path, action="append", required=True, help=data)
    return p


def config_option(g: Group, field: str, *flags: str, **kwargs: Any) -> None:
    """Sets the TrainConfig field ``field`` (flag ``--field-name``, type that of its default)."""
    default = DEFAULTS[field]
    if isinstance(default, int | float | str) and "action" not in kwargs:
        kwargs.setdefault("type", type(default))
    kwargs.setdefault("help", "default: %(default)s")
    flags = flags or (f"--{field.replace('_', '-')}",)
    g.add_argument(*flags, dest=field, default=default, **kwargs)


def switch_off(g: Group, field: str, help: str) -> None:
    """``--no-FIELD``: the boolean TrainConfig field ``field`` (on by default) off."""
    g.add_argument(f"--no-{field.replace('_', '-')}", dest=field, action="store_false", help=help)


def within(kind: Callable[[str], T], low: T, high: T, message: str) -> Callable[[str], T]:
    """A value in [low, high), else argparse's exit 2 with ``message``."""

    def parse(value: str) -> T:
        if not low <= (v := kind(value)) < high:
            raise argparse.ArgumentTypeError(message)
        return v

    return parse


def names(allowed: Sequence[str] = ()) -> Callable[[str], tuple[str, ...]]:
    """``a, b,c`` -> ``("a", "b", "c")``, each of ``allowed`` when given."""

    def parse(value: str) -> tuple[str, ...]:
        items = tuple(v.strip() for v in value.split(",") if v.strip())
        if allowed and (not items or any(v not in allowed for v in items)):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)} (comma-separated)")
        return items

    return parse


# fmt: off
# One line per option, in --help's groups: a table more than code (docs/training.md says more).
def train_parser() -> ArgParser:
    p = command_parser(None, "Train the cats/dogs/other classifier on labelled sources into a "
                       "NEW model folder (model.keras, model.onnx, metadata.json, metrics.json, "
                       "MODEL_CARD.md). Other commands, each with its --help: promote DIR, "
                       "export, calibrate, gate, quantize.")
    g = p.add_argument_group("data and model")
    g.add_argument("--data", type=Path, action="append", help="a labelled source: an Ecotag "
                   "export or a folder per class; repeat, the first is cross-validated "
                   f"(default: {paths.default_data_dir()})")
    g.add_argument("--weights", type=Path, default=paths.default_weights(), help="MobileNetV2")
    g.add_argument("--manifest", type=Path, help="a dataset manifest (datasets/)")
    g.add_argument("--shared", type=Path, default=paths.shared_dir(), help="the manifest's folders")
    g.add_argument("--location", action="append", default=[], metavar="NAME=URL",
                   help="fetch the manifest's source NAME from URL (its pin stays)")
    g.add_argument("--weights-location", help="fetch the manifest's weights from this URL")
    g.add_argument("--dataset-cache", type=Path, default=paths.default_dataset_cache(),
                   help="where downloaded archives are unpacked, once")
    g.add_argument("--champion", help="then gate against this folder or models:/NAME@champion")
    g.add_argument("--promote", action="store_true", help="past the gate, point MLflow's "
                   "'champion' alias at this run (needs MLflow and a manifest not partial)")
    config_option(g, "backbone", choices=BACKBONES, help="'tiny': a small random test network")
    config_option(g, "input_size", metavar="N",
                  type=within(int, 32, 1025, "input size must be a side of 32..1024 pixels"))
    config_option(g, "classes", type=names(), help="class names in output order (any case)")
    config_option(g, "max_pixels", help=argparse.SUPPRESS)
    g.add_argument("--out", type=Path, help="a new model folder (default: models/<name>-<version>)")
    g = p.add_argument_group("head and rules (each chosen on held-out data)")
    config_option(g, "hidden_candidates", "--hidden", type=lambda v: tuple(map(int, v.split(","))),
                  metavar="HIDDEN", help="head shapes: 0 = linear softmax, N = one ReLU layer")
    config_option(g, "weighting_candidates", "--weighting", type=names(WEIGHTINGS),
                  metavar="WEIGHTING", help=f"of {', '.join(WEIGHTINGS)}; the first wins a tie")
    g.add_argument("--tta", choices=tuple(TTA), default="auto", help="mirror pass (2x the CPU)")
    switch_off(g, "confidence_rule", "do not try a min_confidence threshold (-> Other)")
    switch_off(g, "familiarity_gate", "do not try the familiarity gate (unfamiliar -> Other)")
    config_option(g, "gate_prototypes", help="k-means centres the gate compares with")
    config_option(g, "min_gain", help=argparse.SUPPRESS)
    g = p.add_argument_group("training")
    for field in ("seed", "epochs", "batch_size", "learning_rate", "dropout", "l2", "patience"):
        config_option(g, field)
    switch_off(g, "refit", "do not train the head again on train + validation + calibration")
    switch_off(g, "fine_tune", "keep the whole backbone frozen (no top-block fine-tuning)")
    for field in ("fine_tune_epochs", "fine_tune_learning_rate", "fine_tune_weight_decay"):
        config_option(g, field)
    config_option(g, "fine_tune_patience")
    config_option(g, "aug_passes", help="randomly augmented copies per image besides the mirror")
    _run_options(p)
    return p


def _run_options(p: ArgParser) -> None:
    g = p.add_argument_group("held-out data")
    fraction = within(float, 0.0, 1.0, "a fraction must be in [0, 1)")
    config_option(g, "val_fraction", "--val", "--val-fraction", type=fraction)
    config_option(g, "calibration_fraction", "--calibration", type=fraction)
    config_option(g, "test_fraction", "--test", "--test-fraction", type=fraction)
    config_option(g, "cv_folds", help="k-fold cross-validation of the first source (0 = skip)")
    g.add_argument("--ood-dir", type=Path, help="out-of-distribution images (python -m "
                   f"tools.ood_collect); default: {paths.default_ood_dir()} once collected")
    g.add_argument("--no-ood", action="store_true", help="skip the OOD measurement")
    g = p.add_argument_group("runtime")
    g.add_argument("--cache-dir", type=Path, default=paths.default_cache_dir(), help="features")
    g.add_argument("--no-cache", action="store_true", help="keep features in memory only")
    g.add_argument("--threads", type=int, default=int(os.environ.get("TF_INTRA_OP_THREADS", 0)),
                   help="TensorFlow intra-op threads (0: all cores)")
    g.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")
    g = p.add_argument_group("model identity and MLflow")
    config_option(g, "name")
    g.add_argument("--model-version", help="default: the run's UTC time (YYYY.MM.DD.HHMMSS)")
    g.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or None,
                   help="log the run to this MLflow (unset: no tracking)")
    g.add_argument("--no-tracking", action="store_true")
    config_option(g, "experiment")
    config_option(g, "register_name", type=lambda v: v or None, help="'' = do not register")


# fmt: on
def train_config(args: argparse.Namespace, argv: Sequence[str]) -> TrainConfig:
    """The config a parsed ``train`` command line asks for; ``argv`` is kept as its provenance."""
    data = tuple(args.data or [paths.default_data_dir()])
    weights = args.weights if args.backbone == "mobilenet_v2" else None
    version = args.model_version or new_version()
    derived = {
        "data": data,
        "out": args.out or default_out(args.name, version),
        "weights": weights,
        "version": version,
        "tta_candidates": TTA[args.tta],
        "cache_dir": None if args.no_cache else args.cache_dir,
        "ood_dir": None if args.no_ood else (args.ood_dir or paths.collected_ood_dir()),
        "tracking_uri": None if args.no_tracking else args.tracking_uri,
        "provenance": describe_run(data, weights, argv),
    }
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in FIELDS} | derived)


# --------------------------------------------------------------------------- other commands
# fmt: off
def promote_parser() -> ArgParser:
    p = command_parser("promote", "Make a trained model folder the bundled default (checked, "
                       "then swapped in).")
    p.add_argument("model", type=Path, help="the model folder a training run wrote")
    p.add_argument("--to", type=Path, default=BUNDLED_MODEL, help="the bundled model folder")
    return p


def export_parser() -> ArgParser:
    from cats_dogs_other.train.export import TOLERANCE

    p = command_parser("export", "Export a model folder's model.keras to model.onnx (what the "
                       "API serves), verified on the held-out images its metrics.json lists: "
                       f"refused beyond a probability difference of {TOLERANCE:g} or any "
                       "changed argmax.")
    p.add_argument("--model", type=Path, required=True, help="model.keras + metadata.json")
    p.add_argument("--data", type=Path, default=paths.default_data_dir(), help="the held-out files")
    p.add_argument("--images", type=Path, action="append", default=[], help="more (repeatable)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE)
    return p


def calibrate_parser() -> ArgParser:
    p = command_parser("calibrate", "Fit a model folder's probability calibration on its "
                       "calibration split and store it with the test split's drift references "
                       "(metadata.json, metrics.json, MODEL_CARD.md; the model is untouched).",
                       sources=True)
    p.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    return p


def gate_parser() -> ArgParser:
    p = command_parser("gate", "Champion and challenger: both models answer the test photos "
                       "both runs held out; exit 3 when the challenger is worse on any target. "
                       "The table goes into its card, metrics.json, --run-id's MLflow run and "
                       "$GITHUB_STEP_SUMMARY when set.")
    p.add_argument("--model", type=Path, required=True, help="the challenger's model folder")
    p.add_argument("--champion", default=str(BUNDLED_MODEL), help="or models:/NAME@champion")
    p.add_argument("--data", type=Path, action="append", required=True, help="repeat for each")
    p.add_argument("--run-id", help="the challenger's MLflow run, to log the table to")
    p.add_argument("--set-alias", metavar="NAME/VERSION", help="when the challenger passes, "
                   "point NAME's 'champion' alias at VERSION (explicit only)")
    return p


def quantize_parser() -> ArgParser:
    p = command_parser("quantize", "Write model.int8.onnx beside model.onnx (ONNX Runtime static "
                       "QDQ, calibrated on training-split photos; head and gate in float32) and "
                       "judge it against float32 with the champion/challenger gate.", sources=True)
    p.add_argument("--photos", type=int, default=256, help="calibration photos")
    p.add_argument("--seed", type=int, default=0, help="which photos")
    p.add_argument("--dry-run", action="store_true", help="print the card section, write nothing")
    return p
# fmt: on
