"""MODEL_CARD.md from the run's own metrics and provenance only, so it can never disagree with
them; the method, the same for every run, is stated once in :data:`METHOD_PAGE`."""

from __future__ import annotations

from cats_dogs_other.train.dedupe import DEFAULT_MAX_DISTANCE, DEFAULT_MIN_COSINE
from cats_dogs_other.train.provenance import TRAIN_COMMAND, Provenance
from cats_dogs_other.train.reporting.record import markdown_table as _table
from cats_dogs_other.train.results import (
    Candidate,
    ConfidenceRule,
    CrossValidation,
    DatasetReport,
    HeldOutReport,
    Metrics,
    OODReport,
    Section,
)
from cats_dogs_other.train.stats import Proportion, proportion

# What each known source stands for in the project's targets (figures from its test split).
TARGETS = (
    ("cats_dogs_other", ("Cat", "Dog"), "everyday cat/dog photos (course set)", 0.985),
    ("pets_breeds", ("Cat", "Dog"), "varied breed photos", 0.97),
    ("imagenet_samples", ("Other",), "unseen non-cat, non-dog classes answered Other", 0.95),
    ("imagenet_samples", ("Dog",), "ImageNet-style dog photos answered Dog", 0.95),
)
CV_TARGET = 0.98
DUPLICATES_SHOWN = 12
DECISIONS_PAGE = "docs/training-decisions.md"
METHOD_PAGE = "docs/training.md"
METHOD = f"`{METHOD_PAGE}` (*What a run does, and why*; *The model card*)"
DECODE = "kto.inference.decode_image"
USE_AND_LIMITS = f"## Intended use and limits\nStated once for every run: {METHOD}.\n"


def render_card(m: Metrics, provenance: Provenance) -> str:
    return "\n".join(
        (
            _header(m),
            _targets_section(m),
            USE_AND_LIMITS,
            _data_section(m, provenance),
            _decisions_section(m, provenance),
            _results_section(m),
            _reproduce(provenance),
        )
    )


def _true_class_accuracy(section: Section, classes: tuple[str, ...]) -> Proportion:
    labels, matrix = section.confusion_matrix.labels, section.confusion_matrix.matrix
    rows = [labels.index(c) for c in classes]
    return proportion(sum(matrix[r][r] for r in rows), sum(sum(matrix[r]) for r in rows))


def _header(m: Metrics) -> str:
    model, timing, side = m.model, m.timing, m.model.input_size[0]
    mirror = "on" if model.mirror_test_time_augmentation else "off"
    rows = [
        ("version", f"`{model.version}` (also in `metadata.json`, `GET /model` and MLflow)"),
        ("input", f"RGB {side}x{side}, raw 0..255 (resize: Pillow bilinear in `{DECODE}`)"),
        ("model", f"`{model.backbone}` backbone features, {model.head} head, mirror pass {mirror}"),
        (
            "trained file",
            f"`{model.file}`, {model.bytes / 1e6:.1f} MB, sha256 `{model.sha256[:16]}...` (served "
            "as its ONNX export: each file's sha256 under *Served runtime*)",
        ),
        (
            f"latency (CPU, {timing.intra_op_threads or 'all'} threads)",
            f"{timing.ms_single_image} ms for one image, "
            f"{timing.ms_per_image_batch32} ms/image in a batch of 32",
        ),
    ]
    return f"""# Model card: {model.name} {model.version}

Classifies a photo as **Cat**, **Dog** or **Other**. Trained by `{TRAIN_COMMAND}` on
{m.trained_at}; served by `kto.inference`. Figures: held-out images, n, 95% Wilson interval.

{_table(("", ""), rows)}
"""


def _targets_section(m: Metrics) -> str:
    per_source = m.test.per_source
    rows = [
        [f"{what} (`{source}`)", _true_class_accuracy(per_source[source], classes), f"{bar:.1%}"]
        for source, classes, what, bar in TARGETS
        if source in per_source
    ]
    if cv := m.cross_validation:
        rows.append(
            [f"{cv.folds}-fold CV on `{cv.source}` (pooled)", cv.pooled, f"{CV_TARGET:.1%}"]
        )
    return "## Targets\n" + _table(("target", "held-out test figure", "bar"), rows) + "\n"


def _data_section(m: Metrics, provenance: Provenance) -> str:
    sources = "\n".join(
        f"- `{name}`: {text or 'supplied by the user of the pipeline.'}"
        for name, text in provenance.data_sources.items()
    )
    fractions = ", ".join(f"{k} {v:.0%}" for k, v in m.split.fractions.items())
    return f"""## Data
{_sources_table(m)}

{sources}

**Duplicates** (dHash within {DEFAULT_MAX_DISTANCE} bits and cosine >= {DEFAULT_MIN_COSINE}, or \
sha256): {_dedupe_text(m.dataset)}

**Split** (seed {m.split.seed}; {m.split.unit}): {fractions}; \
{len(m.split.held_out_imagenet_classes)} ImageNet classes only in test.
"""


def _sources_table(m: Metrics) -> str:
    parts = ("train", "val", "calibration", "test")
    rows = [
        [f"`{s.name}`", s.format, s.images_listed, s.images_used, _used(s.per_class_used)]
        for s in m.dataset.sources
    ]
    for row, s in zip(rows, m.dataset.sources, strict=True):
        row.append(" / ".join(str(m.split.per_source[s.name][p]) for p in parts))
    return _table(("source", "format", "listed", "used", "per class used", " / ".join(parts)), rows)


def _used(per_class: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in per_class.items() if v)


def _dedupe_text(ds: DatasetReport) -> str:
    removed = ds.duplicates
    if not removed:
        return "No duplicates found."
    shown = "; ".join(
        f"`{d.source}/{d.file}` = `{d.same_as}` ({d.why})" for d in removed[:DUPLICATES_SHOWN]
    )
    more = len(removed) - DUPLICATES_SHOWN
    tail = f"; and {more} more (metrics.json lists all)" if more > 0 else ""
    return f"{len(removed)} removed before splitting: {shown}{tail}."


def _decisions_section(m: Metrics, provenance: Provenance) -> str:
    order = ", ".join(str(m.training.params["weighting_candidates"]).split(","))
    weights = provenance.backbone or (
        "random (the `tiny` test backbone)."
        if m.model.backbone == "tiny"
        else "the `--weights` file (no provenance note beside it)."
    )
    return f"""## Decisions, by measurement on held-out data
- Backbone: `{m.model.backbone}`, {_frozen_text(m)}. Weights: {weights}
- Head, weighting (order {order}) and mirror pass, by validation macro recall, a costlier
  candidate needing {m.training.params["min_gain"]} more: {m.selection.reason}.

{_selection_table(m)}

- {_rule_text(m)}
- {_gate_text(m)}
- {_fine_tune_text(m)}
- Method: {METHOD}; the fixed choices' development measurements: `{DECISIONS_PAGE}`.
"""


def _frozen_text(m: Metrics) -> str:
    ft = m.fine_tuning
    if ft is None or not ft.kept:
        return "frozen"
    return f"frozen below `{ft.first_layer}`, fine-tuned from it on (see below)"


def _fine_tune_text(m: Metrics) -> str:
    ft = m.fine_tuning
    if ft is None:
        return "Fine-tuning the backbone's top block: not tried in this run."
    views = " + ".join("mirrored" if v == "flip" else v for v in ft.views)
    how = (
        f"from `{ft.first_layer}` to the pooled features ({ft.trainable_weights:,} weights), "
        f"on the training split of {', '.join(f'`{s}`' for s in ft.trained_on)} "
        f"(n={ft.images}, {views} views), AdamW learning rate {ft.learning_rate:g}, weight decay "
        f"{ft.weight_decay:g}: best epoch {ft.best_epoch} of {ft.epochs_run}, validation loss "
        f"{ft.val_loss_best} against {ft.val_loss_frozen} for the linear probe"
    )
    said = f"**on**, {how}" if ft.kept else f"tried and **not kept** ({how}: no lower)"
    return f"Fine-tuning the backbone's top block: {said}."


def _selection_table(m: Metrics) -> str:
    header = ("head", "weighting", "mirror pass", "val. macro recall", "val. accuracy", "epochs")
    return _table(header, [_candidate(c) for c in m.selection.candidates])


def _candidate(c: Candidate) -> tuple[object, ...]:
    head = ("linear" if c.hidden == 0 else f"MLP {c.hidden}") + (
        " **(chosen)**" if c.chosen else ""
    )
    acc = "n/a" if c.val_accuracy is None else f"{c.val_accuracy:.4f}"
    return (head, c.weighting, "on" if c.tta else "off", f"{c.val_macro_recall:.4f}", acc, c.epochs)


def _measured(where: str, r: ConfidenceRule, without: str, best: str) -> str:
    return (
        f"on the {where} (n={r.n}) macro recall {r.macro_recall_without:.4f} {without}, "
        f"{r.macro_recall_with_best:.4f} {best} ({r.best_threshold})"
    )


def _rule_text(m: Metrics) -> str:
    rule, decision = m.confidence_rule, m.model.decision
    if not rule:
        return "Confidence rule: not tried in this run."
    measured = _measured("calibration split", rule, "without a threshold", "with the best one")
    if decision:
        return (
            f"Confidence rule: **`min_confidence` {decision.threshold} -> "
            f"{decision.fallback}** (in metadata.json, applied by the wheel); {measured}."
        )
    gain = m.training.params["min_gain"]
    return f"Confidence rule: none, no threshold gained {gain}: {measured}."


def _gate_text(m: Metrics) -> str:
    gate = m.familiarity_gate
    if gate is None:
        return "Familiarity gate: not tried in this run."
    splits = "validation + calibration splits"
    measured = _measured(splits, gate, "without it", "at the best threshold")
    if gate.chosen is None:
        return f"Familiarity gate: not used, no threshold improved macro recall; {measured}."
    chosen = f"**on, threshold {gate.chosen}**, {gate.prototypes} prototypes"
    return f"Familiarity gate: {chosen}; {measured}."


def _results_section(m: Metrics) -> str:
    check = m.serving_check
    return f"""## Results on the held-out test split
All sources together: accuracy **{m.test.all.accuracy}**.

{_tables(m.test.all)}

![confusion matrix](confusion_matrix.png)

{_per_source_results(m.test)}
### Held-out ImageNet classes answered "Other", by kind
{_kinds_table(m.test)}

### Course set, cross-validated
{_cv_text(m.cross_validation)}

### Other pictures
{_ood_text(m.ood)}

![training curves](training_curves.png)

Serving check: {check.same_prediction} of {check.files} test files gave the same answer through
`kto.inference`, largest probability difference {check.max_abs_probability_diff:.1e}.
"""


def _tables(section: Section) -> str:
    """Per-class figures, then the confusion matrix."""
    per_class = [
        [cls, v.precision_ci, v.recall_ci, f"{v.f1:.3f}", v.support]
        for cls, v in section.per_class.items()
    ]
    labels, matrix = section.confusion_matrix.labels, section.confusion_matrix.matrix
    confusion = [[f"**{label}**", *row] for label, row in zip(labels, matrix, strict=True)]
    return (
        _table(("class", "precision", "recall", "F1", "support"), per_class)
        + "\n\n"
        + _table(("true \\ predicted", *labels), confusion)
    )


def _per_source_results(test: HeldOutReport) -> str:
    return "\n".join(
        f"### `{name}` (test split)\nAccuracy {sec.accuracy}.\n\n{_tables(sec)}\n"
        for name, sec in test.per_source.items()
    )


def _kinds_table(test: HeldOutReport) -> str:
    if not test.other_by_kind:
        return "No held-out ImageNet classes in this run."
    return _other_table(
        "kind", test.other_by_kind, "all held-out classes", test.other_held_out_classes
    )


def _cv_text(cv: CrossValidation | None) -> str:
    if not cv:
        return "Not run."
    recall = ", ".join(f"{c} {v}" for c, v in cv.per_class_recall.items())
    folds = ", ".join(f"{a:.3f}" for a in cv.fold_accuracies)
    return (
        f"{cv.folds}-fold on `{cv.source}`: pooled accuracy **{cv.pooled}**, folds {folds} "
        f"(mean {cv.accuracy_mean:.4f}, std {cv.accuracy_std:.4f}). Recall: {recall}."
    )


def _ood_text(ood: OODReport | None) -> str:
    if not ood:
        return f"Not measured in this run (collect the set once with `{TRAIN_COMMAND} ood`)."
    return "`make ood`'s pictures:\n\n" + _other_table("category", ood.per_category, "all", ood.all)


def _other_table(key: str, shares: dict[str, Proportion], total: str, p: Proportion) -> str:
    return _table((key, "answered Other"), [*shares.items(), (f"**{total}**", p)])


def _reproduce(provenance: Provenance) -> str:
    return f"## Reproduce\n```\n{provenance.command}\n```\n"
