"""``python -m cats_dogs_other.train [COMMAND] ...``: train (the default), promote, export,
calibrate, gate, quantize. A command imports what it runs only once its line is parsed, so
``--help`` starts no TensorFlow. A ``train`` option whose ``dest`` is a TrainConfig field takes
that field's default and reaches the config as parsed; :func:`train_config` derives the rest."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from argparse import ArgumentParser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cats_dogs_other.core.cli_help import EnvironmentHelpFormatter
from cats_dogs_other.train import paths
from cats_dogs_other.train.config import DEFAULTS, FIELDS, WEIGHTINGS, TrainConfig
from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.network import BACKBONES
from cats_dogs_other.train.provenance import TRAIN_COMMAND, describe_run
from cats_dogs_other.train.versions import BUNDLED_MODEL, default_out, new_version

if TYPE_CHECKING:
    from cats_dogs_other.train.manifest import Manifest
    from cats_dogs_other.train.run import Run

log = logging.getLogger("cats_dogs_other.train")
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
MOVED = {"ood": "python -m tools.ood_collect (make ood)"}
T = TypeVar("T", int, float)


class HelpFormatter(EnvironmentHelpFormatter):
    """Every option that takes a value shows its default (with or without a help text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS) or "%(" in text:
            return text
        return f"{text} (default: %(default)s)"


def parser(
    command: str | None, about: str | None, sources: bool = False, data_required: bool = True
) -> ArgumentParser:
    """``about``: the command's docstring, one paragraph; ``sources``: the command rebuilds a
    trained model's splits from its metrics.json."""
    prog = f"{TRAIN_COMMAND} {command}" if command else TRAIN_COMMAND
    about = " ".join((about or "").split())
    p = ArgumentParser(prog, None, about, ENVIRONMENT, formatter_class=HelpFormatter)
    if sources:
        p.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="a model folder")
        data = "a source the run was trained on, in the run's order (repeat for each)"
        p.add_argument("--data", type=Path, action="append", required=data_required, help=data)
    return p


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


def configs(g: Any, *fields: str, **kwargs: Any) -> None:
    """Sets each TrainConfig field (flag ``--field-name``, type that of its default); ``no_FIELD``
    is the switch that turns the boolean FIELD (on by default) off."""
    flags = kwargs.pop("flags", None)
    for field in fields:
        dest, default = field.removeprefix("no_"), DEFAULTS[field.removeprefix("no_")]
        kind = {"type": type(default), "default": default, "help": "default: %(default)s"}
        if field.startswith("no_"):
            kind = {"action": "store_false"}
        g.add_argument(*flags or [f"--{field.replace('_', '-')}"], dest=dest, **kind | kwargs)


def train_parser() -> ArgumentParser:
    """Train the cats/dogs/other classifier on labelled sources into a NEW model folder
    (model.keras, model.onnx, metadata.json, metrics.json, MODEL_CARD.md). Other commands, each
    with its --help: promote DIR, export, calibrate, gate, quantize."""
    p = parser(None, train_parser.__doc__)
    g = p.add_argument_group("data and model")
    add = g.add_argument
    data = "a labelled source: an Ecotag export or a folder per class; repeat, the first is"
    add(
        "--data",
        type=Path,
        action="append",
        help=f"{data} cross-validated (default: {paths.default_data_dir()})",
    )
    add("--weights", type=Path, default=paths.default_weights(), help="MobileNetV2")
    add("--manifest", type=Path, help="a dataset manifest (datasets/)")
    add("--shared", type=Path, default=paths.shared_dir(), help="the manifest's folders")
    where = "fetch the manifest's source NAME from URL (its pin stays)"
    add("--location", action="append", default=[], metavar="NAME=URL", help=where)
    add("--weights-location", help="fetch the manifest's weights from this URL")
    once = "where downloaded archives are unpacked, once"
    add("--dataset-cache", type=Path, default=paths.default_dataset_cache(), help=once)
    add("--champion", help="then gate against this folder or models:/NAME@champion")
    alias = "past the gate, point MLflow's 'champion' alias at this run (needs MLflow and a"
    add("--promote", action="store_true", help=f"{alias} manifest not partial)")
    configs(g, "backbone", choices=BACKBONES, help="'tiny': a small random test network")
    size = within(int, 32, 1025, "input size must be a side of 32..1024 pixels")
    configs(g, "input_size", metavar="N", type=size)
    configs(g, "classes", type=names(), help="class names in output order (any case)")
    configs(g, "max_pixels", help=argparse.SUPPRESS)
    add("--out", type=Path, help="a new model folder (default: models/<name>-<version>)")
    g = p.add_argument_group("head and rules (each chosen on held-out data)")
    shapes = "head shapes: 0 = linear softmax, N = one ReLU layer"
    hidden = {"type": lambda v: tuple(map(int, v.split(","))), "help": shapes}
    configs(g, "hidden_candidates", flags=["--hidden"], metavar="HIDDEN", **hidden)
    tie = f"of {', '.join(WEIGHTINGS)}; the first wins a tie"
    weighting = {"type": names(WEIGHTINGS), "metavar": "WEIGHTING", "help": tie}
    configs(g, "weighting_candidates", flags=["--weighting"], **weighting)
    g.add_argument("--tta", choices=tuple(TTA), default="auto", help="mirror pass (2x the CPU)")
    configs(g, "no_confidence_rule", help="do not try a min_confidence threshold (-> Other)")
    configs(g, "no_familiarity_gate", help="do not try the familiarity gate (unfamiliar -> Other)")
    configs(g, "gate_prototypes", help="k-means centres the gate compares with")
    configs(g, "min_gain", help=argparse.SUPPRESS)
    g = p.add_argument_group("training")
    configs(g, "seed", "epochs", "batch_size", "learning_rate", "dropout", "l2", "patience")
    configs(g, "no_refit", help="do not train the head again on train + validation + calibration")
    configs(g, "no_fine_tune", help="keep the whole backbone frozen (no top-block fine-tuning)")
    configs(g, "fine_tune_epochs", "fine_tune_learning_rate", "fine_tune_weight_decay")
    configs(g, "fine_tune_patience")
    configs(g, "aug_passes", help="randomly augmented copies per image besides the mirror")
    return _run_options(p)


def _run_options(p: ArgumentParser) -> ArgumentParser:
    g = p.add_argument_group("held-out data")
    fraction = within(float, 0.0, 1.0, "a fraction must be in [0, 1)")
    configs(g, "val_fraction", flags=["--val", "--val-fraction"], type=fraction)
    configs(g, "calibration_fraction", flags=["--calibration"], type=fraction)
    configs(g, "test_fraction", flags=["--test", "--test-fraction"], type=fraction)
    configs(g, "cv_folds", help="k-fold cross-validation of the first source (0 = skip)")
    ood = "out-of-distribution images (python -m tools.ood_collect); default:"
    g.add_argument("--ood-dir", type=Path, help=f"{ood} {paths.default_ood_dir()} once collected")
    g.add_argument("--no-ood", action="store_true", help="skip the OOD measurement")
    g = p.add_argument_group("runtime")
    add = g.add_argument
    add("--cache-dir", type=Path, default=paths.default_cache_dir(), help="features")
    add("--no-cache", action="store_true", help="keep features in memory only")
    threads = int(os.environ.get("TF_INTRA_OP_THREADS", 0))
    add("--threads", type=int, default=threads, help="TensorFlow intra-op threads (0: all cores)")
    add("--quiet", dest="progress", action="store_false", help="no progress bars")
    g = p.add_argument_group("model identity and MLflow")
    configs(g, "name")
    version = "default: the run's UTC time (YYYY.MM.DD.HHMMSS)"
    g.add_argument("--model-version", help=version)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    g.add_argument(
        "--tracking-uri", default=uri, help="log the run to this MLflow (unset: no tracking)"
    )
    g.add_argument("--no-tracking", action="store_true")
    configs(g, "experiment")
    configs(g, "register_name", type=lambda v: v or None, help="'' = do not register")
    return p


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


def _tensorflow(threads: int = 0) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing chatter from per-fold heads, not actionable
    if threads:
        from kto.inference import configure_threads

        try:
            configure_threads(intra_op=threads, inter_op=min(threads, 2))
        except RuntimeError:  # TensorFlow already running in this process (tests, notebooks)
            log.warning("--threads ignored: TensorFlow is already initialised in this process")


def _train(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    manifest = _resolve_manifest(args)  # before TensorFlow: a bad manifest trains nothing
    _check_promotion(args, manifest)
    _tensorflow(args.threads)
    from cats_dogs_other.train.pipeline import run_training

    result = run_training(train_config(args, argv))
    if manifest is not None:
        from cats_dogs_other.train.reporting.record import update_json

        update_json(result.out / "metrics.json", {"manifest": manifest.record()})
    _print_summary(result)
    if not args.champion:
        return 0
    tracked, alias = result.tracked, None
    if args.promote:
        if tracked is None or not tracked.registered_version:
            raise TrainingError("--promote: the run was not registered in MLflow; nothing promoted")
        alias = f"{tracked.registered_name}/{tracked.registered_version}"
    data = list(args.data or [paths.default_data_dir()])
    return _run_gate(result.out, args.champion, data, tracked.run_id if tracked else None, alias)


def _check_promotion(args: argparse.Namespace, manifest: Manifest | None) -> None:
    """``--promote`` is refused before any training when it could never happen."""
    if not args.promote:
        return
    if not args.champion:
        raise TrainingError("--promote needs --champion: a model is promoted only past the gate")
    if manifest is None or manifest.partial:
        raise TrainingError(
            "--promote needs a dataset manifest that is not partial (--manifest): a model "
            "trained on part of the data is never promoted"
        )
    if args.no_tracking or not (args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        raise TrainingError("--promote needs MLflow tracking (MLFLOW_TRACKING_URI)")
    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri or os.environ["MLFLOW_TRACKING_URI"]


def _resolve_manifest(args: argparse.Namespace) -> Manifest | None:
    """``--manifest``: its checked sources and weights become --data and --weights."""
    if args.manifest is None:
        return None
    if args.data:
        raise TrainingError("--manifest names the sources: drop --data (or the manifest)")
    from cats_dogs_other.train.manifest import load_manifest, relocate, resolve

    if bad := next((v for v in args.location if not re.fullmatch(r"[^=]+=.+", v)), None):
        raise TrainingError(f"--location {bad!r}: expected NAME=URL")
    locations = dict(v.split("=", 1) for v in args.location)
    manifest = relocate(load_manifest(args.manifest), locations, args.weights_location)
    data, args.weights = resolve(manifest, args.shared, args.dataset_cache)
    args.data = list(data)
    if manifest.partial:
        log.warning("%s is partial: this run trains and reports, never registers", args.manifest)
        args.register_name = None
    return manifest


def _print_summary(result: Run) -> None:
    m, tracked = result.metrics, result.tracked
    lines = [f"\nmodel {m.model.name} {m.model.version} written to {result.out}"]
    lines += [f"  test, all sources: {m.test.all.accuracy}"]
    lines += [f"  test, {name}: {sec.accuracy}" for name, sec in m.test.per_source.items()]
    if m.test.other_held_out_classes.n:
        lines += [f"  held-out ImageNet classes answered Other: {m.test.other_held_out_classes}"]
    if cv := m.cross_validation:
        lines += [f"  {cv.folds}-fold CV on {cv.source}: {cv.pooled}, folds {cv.fold_accuracies}"]
    d = m.model.decision
    shown = None if d is None else {"threshold": d.threshold, "fallback": d.fallback}
    mirror = m.model.mirror_test_time_augmentation
    lines += [f"  head: {m.model.head}, mirror pass {mirror}, decision {shown}"]
    if tracked:
        lines += [f"  MLflow run {tracked.run_id}: {tracked.model_uri}"]
    if tracked and tracked.registered_version:
        lines += [f"  registered: models:/{tracked.registered_name}/{tracked.registered_version}"]
    print("\n".join([*lines, f"  make it the bundled default: make promote MODEL={result.out}"]))


def _promote(argv: list[str]) -> int:
    """Make a trained model folder the bundled default (checked, then swapped in)."""
    p = parser("promote", _promote.__doc__)
    p.add_argument("model", type=Path, help="the model folder a training run wrote")
    p.add_argument("--to", type=Path, default=BUNDLED_MODEL, help="the bundled model folder")
    args = p.parse_args(argv)
    from cats_dogs_other.train.reporting.champion import refuse_unpromotable
    from cats_dogs_other.train.versions import promote

    refuse_unpromotable(args.model)
    promote(args.model, args.to)
    return 0


def _export(argv: list[str]) -> int:
    """Export a model folder's model.keras to model.onnx (what the API serves), verified on its
    run's held-out test and validation files (rebuilt from the --data sources, as calibrate
    does) and on any --images folders: refused beyond --tolerance or on any changed argmax."""
    from cats_dogs_other.train import export
    from cats_dogs_other.train.dataset import IMAGE_SUFFIXES
    from cats_dogs_other.train.reporting.heldout import rebuild_held_out

    p = parser("export", _export.__doc__, sources=True, data_required=False)
    p.add_argument("--images", type=Path, action="append", default=[], help="more (repeatable)")
    p.add_argument("--tolerance", type=float, default=export.TOLERANCE, help="largest Δp")
    args = p.parse_args(argv)
    if not (args.model / "metadata.json").is_file():
        raise TrainingError(f"{args.model} is not a model folder (no metadata.json)")
    if args.data and not (args.model / "metrics.json").is_file():
        raise TrainingError(
            f"{args.model} has no metrics.json, so no held-out split to rebuild from --data: "
            "verify on --images FOLDER instead"
        )
    _tensorflow()
    rebuilt = rebuild_held_out(args.model, args.data) if args.data else None
    held = [p.resolve() for _, p, _ in rebuilt.test + rebuilt.val] if rebuilt else []
    found = (p for d in args.images for p in sorted(d.rglob("*")))
    extra = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.resolve() not in held]
    sources = [export.HELD_OUT] * bool(held)
    sources += [f"{len(extra)} more from {', '.join(map(str, args.images))}"] * bool(extra)
    if not sources:
        raise TrainingError(
            f"no images to verify on: pass --data for each source {args.model} was trained on "
            "(in the run's order), or --images FOLDER"
        )
    source, images = " + ".join(sources), [*held, *extra]
    rec = export.export_model(args.model, images, source=source, tolerance=args.tolerance)
    check, out = rec["verification"], args.model / export.EXPORT_FILE
    print(
        f"wrote {out} ({rec['bytes'] / 1e6:.1f} MB): largest probability "
        f"difference {check['max_abs_probability_diff']:.2e}, argmax agreement "
        f"{check['argmax_agreement']:.1%} on {check['images']} images"
    )
    return 0


def _calibrate(argv: list[str]) -> int:
    """Fit a model folder's probability calibration on its calibration split and store it
    with the test split's drift references (metadata.json, metrics.json, MODEL_CARD.md; the model
    is untouched)."""
    p = parser("calibrate", _calibrate.__doc__, sources=True)
    p.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    args = p.parse_args(argv)
    _tensorflow()
    from cats_dogs_other.train.reporting.calibrate import calibrate_model
    from cats_dogs_other.train.reporting.heldout import rebuild_held_out

    held = rebuild_held_out(args.model, args.data)
    pairs = [[(path, label) for _, path, label in split] for split in (held.calibration, held.test)]
    report = calibrate_model(args.model, *pairs, write=not args.dry_run)
    print(report.markdown())
    if not args.dry_run:
        print(f"\nwritten into {args.model} (metadata.json, metrics.json, MODEL_CARD.md)")
    return 0


def _gate(argv: list[str]) -> int:
    """Champion and challenger: both models answer the test photos both runs held out; exit 3
    when the challenger is worse on any target. The table goes into its card, metrics.json,
    --run-id's MLflow run and $GITHUB_STEP_SUMMARY when set."""
    p = parser("gate", _gate.__doc__)
    p.add_argument("--model", type=Path, required=True, help="the challenger's model folder")
    p.add_argument("--champion", default=str(BUNDLED_MODEL), help="or models:/NAME@champion")
    p.add_argument("--data", type=Path, action="append", required=True, help="repeat for each")
    p.add_argument("--run-id", help="the challenger's MLflow run, to log the table to")
    alias = "when the challenger passes, point NAME's 'champion' alias at VERSION (explicit only)"
    p.add_argument("--set-alias", metavar="NAME/VERSION", help=alias)
    args = p.parse_args(argv)
    _tensorflow()
    return _run_gate(args.model, args.champion, args.data, args.run_id, args.set_alias)


def _run_gate(
    model: Path, against: str, data: list[Path], run_id: str | None, alias: str | None
) -> int:
    """Exit 3 with the table when the challenger is worse; the alias only on an explicit ask."""
    import tempfile

    from cats_dogs_other.train.reporting import champion

    if alias:
        champion.check_promotable(model, alias)
    with tempfile.TemporaryDirectory(prefix="champion-") as scratch:
        champion_dir, label = champion.resolve_champion(against, Path(scratch))
        result = champion.run_gate(champion_dir, model, data, label)
    champion.record(model, result, run_id)
    print(result.table())
    if not result.passed:
        print("error: the new model is worse than the champion: not promoted", file=sys.stderr)
        return 3
    if alias:
        name, _, version = alias.rpartition("/")
        champion.set_champion_alias(name, version)
        print(f"models:/{name}@champion is now version {version}")
    return 0


def _quantize(argv: list[str]) -> int:
    """Write model.int8.onnx beside model.onnx (ONNX Runtime static QDQ, calibrated on
    training-split photos; head and gate in float32) and judge it against float32 with the
    champion/challenger gate."""
    p = parser("quantize", _quantize.__doc__, sources=True)
    p.add_argument("--photos", type=int, default=256, help="calibration photos")
    p.add_argument("--seed", type=int, default=0, help="which photos")
    p.add_argument("--dry-run", action="store_true", help="print the card section, write nothing")
    args = p.parse_args(argv)
    from cats_dogs_other.train.quantize import build_int8, card_section, write_record

    # a file that fails the gate is kept under another name (quantize.REJECTED_FILE), the
    # command ends non-zero; metadata.json's int8 record says whether ``auto`` serves it
    record = build_int8(args.model, args.data, args.photos, args.seed)
    print(card_section(record))
    if not args.dry_run:
        write_record(args.model, record)
    print(f"wrote {args.model / record['file']} ({record['bytes'] / 1e6:.1f} MB)")
    return 0 if record["champion_gate"]["passed"] else 1


RUNS = (_train, _promote, _export, _calibrate, _gate, _quantize)
COMMANDS = {run.__name__.removeprefix("_"): run for run in RUNS}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in MOVED:
        print(f"error: '{argv[0]}' is now {MOVED[argv[0]]}", file=sys.stderr)
        return 2
    run = COMMANDS[argv.pop(0)] if argv and argv[0] in COMMANDS else _train
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run(argv)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
