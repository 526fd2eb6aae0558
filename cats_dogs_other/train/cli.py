"""``python -m cats_dogs_other.train [COMMAND] ...``: train (the default), promote, export,
calibrate, gate, quantize. A command imports what it runs only once it runs, so ``--help``
starts no TensorFlow."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cats_dogs_other.train import arguments, paths
from cats_dogs_other.train.errors import TrainingError

if TYPE_CHECKING:
    from cats_dogs_other.train.manifest import Manifest
    from cats_dogs_other.train.pipeline import RunResult

log = logging.getLogger("cats_dogs_other.train")


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


def _train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    manifest = _resolve_manifest(args)  # before TensorFlow: a bad manifest trains nothing
    _check_promotion(args, manifest)
    _tensorflow(args.threads)
    from cats_dogs_other.train.pipeline import run_training

    result = run_training(arguments.train_config(args, argv))
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
    run_id = tracked.run_id if tracked else None
    gate = dict(champion=args.champion, model=result.out, data=data, run_id=run_id, set_alias=alias)
    return _gate(argparse.Namespace(**gate), argv)


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


def _print_summary(result: RunResult) -> None:
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
    lines += [f"  head: {m.model.head}, mirror pass {m.model.mirror_test_time_augmentation}, "
              f"decision {shown}"]  # fmt: skip
    if tracked:
        lines += [f"  MLflow run {tracked.run_id}: {tracked.model_uri}"]
    if tracked and tracked.registered_version:
        lines += [f"  registered: models:/{tracked.registered_name}/{tracked.registered_version}"]
    print("\n".join([*lines, f"  make it the bundled default: make promote MODEL={result.out}"]))


def _promote(args: argparse.Namespace, _: Sequence[str]) -> int:
    from cats_dogs_other.train.reporting.champion import refuse_unpromotable
    from cats_dogs_other.train.versions import promote

    refuse_unpromotable(args.model)
    promote(args.model, args.to)
    return 0


def _export(args: argparse.Namespace, _: Sequence[str]) -> int:
    """Verify on the held-out files metrics.json lists, plus any ``--images`` folders."""
    from cats_dogs_other.train.export import EXPORT_FILE, export_model, held_out_files, images_in

    if not (args.model / "metadata.json").is_file():
        raise TrainingError(f"{args.model} is not a model folder (no metadata.json)")
    held = held_out_files(args.model, args.data)
    extra = [p for d in args.images for p in images_in(d) if p.name not in {h.name for h in held}]
    sources = [f"the {len(held)} held-out files metrics.json lists"] * bool(held)
    sources += [f"{len(extra)} more from {', '.join(map(str, args.images))}"] * bool(extra)
    if not sources:
        raise TrainingError(
            f"no images to verify on: {args.model}/metrics.json lists no held-out files found "
            f"in {args.data}; pass --data or --images"
        )
    source, images = " + ".join(sources), [*held, *extra]
    rec = export_model(args.model, images, source=source, tolerance=args.tolerance)
    check = rec["verification"]
    print(
        f"wrote {args.model / EXPORT_FILE} ({rec['bytes'] / 1e6:.1f} MB): largest probability "
        f"difference {check['max_abs_probability_diff']:.2e}, argmax agreement "
        f"{check['argmax_agreement']:.1%} on {check['images']} images"
    )
    return 0


def _calibrate(args: argparse.Namespace, _: Sequence[str]) -> int:
    from cats_dogs_other.train.reporting.calibrate import calibrate_model, write_report
    from cats_dogs_other.train.reporting.heldout import rebuild_held_out

    held = rebuild_held_out(args.model, args.data)
    pairs = [[(path, label) for _, path, label in split] for split in (held.calibration, held.test)]
    report = calibrate_model(args.model, *pairs)
    print(report.markdown())
    if not args.dry_run:
        write_report(args.model, report)
        print(f"\nwritten into {args.model} (metadata.json, metrics.json, MODEL_CARD.md)")
    return 0


def _gate(args: argparse.Namespace, _: Sequence[str]) -> int:
    """Exit 3 with the table when the challenger is worse; the alias only on an explicit ask."""
    import tempfile

    from cats_dogs_other.train.reporting import champion

    model, alias = args.model, args.set_alias
    if alias:
        champion.check_promotable(model, alias)
    with tempfile.TemporaryDirectory(prefix="champion-") as scratch:
        champion_dir, label = champion.resolve_champion(args.champion, Path(scratch))
        result = champion.run_gate(champion_dir, model, args.data, label)
    champion.record(model, result, args.run_id)
    print(result.table())
    if not result.passed:
        print("error: the new model is worse than the champion: not promoted", file=sys.stderr)
        return 3
    if alias:
        name, _, version = alias.rpartition("/")
        champion.set_champion_alias(name, version)
        print(f"models:/{name}@champion is now version {version}")
    return 0


def _quantize(args: argparse.Namespace, _: Sequence[str]) -> int:
    """A file that fails the gate is kept under another name (quantize.REJECTED_FILE) and the
    command ends non-zero; metadata.json's int8 record says whether ``auto`` serves it."""
    from cats_dogs_other.train.quantize import build_int8, card_section, write_record

    record = build_int8(args.model, args.data, args.photos, args.seed)
    print(card_section(record))
    if not args.dry_run:
        write_record(args.model, record)
    print(f"wrote {args.model / record['file']} ({record['bytes'] / 1e6:.1f} MB)")
    return 0 if record["champion_gate"]["passed"] else 1


Run = Callable[[argparse.Namespace, Sequence[str]], int]
COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Run, bool]] = {
    # name: (parser, runner, starts TensorFlow first); train starts it once its inputs are checked
    "train": (arguments.train_parser, _train, False),
    "promote": (arguments.promote_parser, _promote, False),
    "export": (arguments.export_parser, _export, True),
    "calibrate": (arguments.calibrate_parser, _calibrate, True),
    "gate": (arguments.gate_parser, _gate, True),
    "quantize": (arguments.quantize_parser, _quantize, False),
}
MOVED = {"ood": "python -m tools.ood_collect (make ood)"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in MOVED:
        print(f"error: '{argv[0]}' is now {MOVED[argv[0]]}", file=sys.stderr)
        return 2
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "train"
    parser, run, tensorflow = COMMANDS[command]
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if tensorflow:
            _tensorflow()
        return run(args, argv)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
