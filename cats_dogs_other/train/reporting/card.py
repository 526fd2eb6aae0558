"""MODEL_CARD.md from the run's own metrics and provenance only, so it can never disagree with
them; the method, the same for every run, is stated once in :data:`METHOD_PAGE`."""

from __future__ import annotations

from cats_dogs_other.train.dedupe import DEFAULT_MAX_DISTANCE, DEFAULT_MIN_COSINE
from cats_dogs_other.train.provenance import TRAIN_COMMAND, Provenance
from cats_dogs_other.train.reporting.record import markdown_table as _table
from cats_dogs_other.train.results import Candidate, ConfidenceRule, Metrics, Section
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
PARTS = ("train", "val", "calibration", "test")


def render_card(m: Metrics, provenance: Provenance) -> str:
    reproduce = f"## Reproduce\n```\n{provenance.command}\n```\n"
    sections = (_header(m), _data(m, provenance), _decisions(m, provenance), _results(m))
    return "\n".join((*sections, reproduce))


def _true_class_accuracy(section: Section, classes: tuple[str, ...]) -> Proportion:
    labels, matrix = section.confusion_matrix.labels, section.confusion_matrix.matrix
    rows = [labels.index(c) for c in classes]
    return proportion(sum(matrix[r][r] for r in rows), sum(sum(matrix[r]) for r in rows))


def _header(m: Metrics) -> str:
    model, timing, side, cv = m.model, m.timing, m.model.input_size[0], m.cross_validation
    tests = m.test.per_source
    targets = [
        (f"{what} (`{source}`)", _true_class_accuracy(tests[source], classes), f"{bar:.1%}")
        for source, classes, what, bar in TARGETS
        if source in tests
    ]
    if cv:
        targets.append(
            (f"{cv.folds}-fold CV on `{cv.source}` (pooled)", cv.pooled, f"{CV_TARGET:.1%}")
        )
    return f"""# Model card: {model.name} {model.version}

Classifies a photo as **Cat**, **Dog** or **Other**. Trained by `{TRAIN_COMMAND}` on
{m.trained_at}; served by `kto.inference`. Figures: held-out images, n, 95% Wilson interval.

|  |  |
|---|---|
| version | `{model.version}` (also in `metadata.json`, `GET /model` and MLflow) |
| input | RGB {side}x{side}, raw 0..255 (resize: Pillow bilinear in `kto.inference.decode_image`) |
| model | `{model.backbone}` backbone features, {model.head} head, mirror pass \
{"on" if model.mirror_test_time_augmentation else "off"} |
| trained file | `{model.file}`, {model.bytes / 1e6:.1f} MB, sha256 `{model.sha256[:16]}...` \
(served as its ONNX export: each file's sha256 under *Served runtime*) |
| latency (CPU, {timing.intra_op_threads or "all"} threads) | {timing.ms_single_image} ms for one \
image, {timing.ms_per_image_batch32} ms/image in a batch of 32 |

## Targets
{_table(("target", "held-out test figure", "bar"), targets)}

## Intended use and limits
Stated once for every run: {METHOD}.
"""


def _data(m: Metrics, provenance: Provenance) -> str:
    sources = "\n".join(
        f"| `{s.name}` | {s.format} | {s.images_listed} | {s.images_used} | "
        f"{', '.join(f'{k} {v}' for k, v in s.per_class_used.items() if v)} | "
        f"{' / '.join(str(m.split.per_source[s.name][p]) for p in PARTS)} |"
        for s in m.dataset.sources
    )
    notes = "\n".join(
        f"- `{name}`: {text or 'supplied by the user of the pipeline.'}"
        for name, text in provenance.data_sources.items()
    )
    dups, more = m.dataset.duplicates, len(m.dataset.duplicates) - DUPLICATES_SHOWN
    shown = "; ".join(
        f"`{d.source}/{d.file}` = `{d.same_as}` ({d.why})" for d in dups[:DUPLICATES_SHOWN]
    )
    shown += f"; and {more} more (metrics.json lists all)" if more > 0 else ""
    dedupe = f"{len(dups)} removed before splitting: {shown}." if dups else "No duplicates found."
    fractions = ", ".join(f"{k} {v:.0%}" for k, v in m.split.fractions.items())
    return f"""## Data
| source | format | listed | used | per class used | {" / ".join(PARTS)} |
|---|---|---|---|---|---|
{sources}

{notes}

**Duplicates** (dHash within {DEFAULT_MAX_DISTANCE} bits and cosine >= {DEFAULT_MIN_COSINE}, or \
sha256): {dedupe}

**Split** (seed {m.split.seed}; {m.split.unit}): {fractions}; \
{len(m.split.held_out_imagenet_classes)} ImageNet classes only in test.
"""


def _decisions(m: Metrics, provenance: Provenance) -> str:
    ft, params, gate = m.fine_tuning, m.training.params, m.familiarity_gate
    frozen = "frozen"
    if ft and ft.kept:
        frozen = f"frozen below `{ft.first_layer}`, fine-tuned from it on (see below)"
    weights = provenance.backbone or (
        "random (the `tiny` test backbone)."
        if m.model.backbone == "tiny"
        else "the `--weights` file (no provenance note beside it)."
    )
    gate_text = "not tried in this run."
    if gate:
        chosen = f"**on, threshold {gate.chosen}**, {gate.prototypes} prototypes"
        if gate.chosen is None:
            chosen = "not used, no threshold improved macro recall"
        where = "validation + calibration splits"
        gate_text = f"{chosen}; {_measured(where, gate, 'without it', 'at the best threshold')}."
    order = ", ".join(str(params["weighting_candidates"]).split(","))
    candidates = "\n".join(map(_candidate, m.selection.candidates))
    return f"""## Decisions, by measurement on held-out data
- Backbone: `{m.model.backbone}`, {frozen}. Weights: {weights}
- Head, weighting (order {order}) and mirror pass, by validation macro recall, a costlier
  candidate needing {params["min_gain"]} more: {m.selection.reason}.

| head | weighting | mirror pass | val. macro recall | val. accuracy | epochs |
|---|---|---|---|---|---|
{candidates}

- Confidence rule: {_rule_text(m, params["min_gain"])}
- Familiarity gate: {gate_text}
- Fine-tuning the backbone's top block: {_fine_tuning(m)}.
- Method: {METHOD}; the fixed choices' development measurements: `{DECISIONS_PAGE}`.
"""


def _candidate(c: Candidate) -> str:
    head = (f"MLP {c.hidden}" if c.hidden else "linear") + (" **(chosen)**" if c.chosen else "")
    acc = "n/a" if c.val_accuracy is None else f"{c.val_accuracy:.4f}"
    tta = "on" if c.tta else "off"
    return f"| {head} | {c.weighting} | {tta} | {c.val_macro_recall:.4f} | {acc} | {c.epochs} |"


def _measured(where: str, r: ConfidenceRule, without: str, best: str) -> str:
    return (
        f"on the {where} (n={r.n}) macro recall {r.macro_recall_without:.4f} {without}, "
        f"{r.macro_recall_with_best:.4f} {best} ({r.best_threshold})"
    )


def _rule_text(m: Metrics, gain: object) -> str:
    rule, decision = m.confidence_rule, m.model.decision
    if not rule:
        return "not tried in this run."
    measured = _measured("calibration split", rule, "without a threshold", "with the best one")
    if not decision:
        return f"none, no threshold gained {gain}: {measured}."
    return (
        f"**`min_confidence` {decision.threshold} -> {decision.fallback}** (in metadata.json, "
        f"applied by the wheel); {measured}."
    )


def _fine_tuning(m: Metrics) -> str:
    ft = m.fine_tuning
    if ft is None:
        return "not tried in this run"
    how = (
        f"from `{ft.first_layer}` to the pooled features ({ft.trainable_weights:,} weights), "
        f"on the training split of {', '.join(f'`{s}`' for s in ft.trained_on)} (n={ft.images}, "
        f"{' + '.join('mirrored' if v == 'flip' else v for v in ft.views)} views), AdamW learning "
        f"rate {ft.learning_rate:g}, weight decay {ft.weight_decay:g}: best epoch {ft.best_epoch} "
        f"of {ft.epochs_run}, validation loss {ft.val_loss_best} against {ft.val_loss_frozen} for "
        "the linear probe"
    )
    return f"**on**, {how}" if ft.kept else f"tried and **not kept** ({how}: no lower)"


def _results(m: Metrics) -> str:
    test, cv, ood, check = m.test, m.cross_validation, m.ood, m.serving_check
    per_source = "\n".join(
        f"### `{name}` (test split)\nAccuracy {sec.accuracy}.\n\n{_tables(sec)}\n"
        for name, sec in test.per_source.items()
    )
    kinds = "No held-out ImageNet classes in this run."
    if test.other_by_kind:
        kinds = _other_table(
            "kind", test.other_by_kind, "all held-out classes", test.other_held_out_classes
        )
    cv_text = "Not run."
    if cv:
        cv_text = (
            f"{cv.folds}-fold on `{cv.source}`: pooled accuracy **{cv.pooled}**, folds "
            f"{', '.join(f'{a:.3f}' for a in cv.fold_accuracies)} (mean {cv.accuracy_mean:.4f}, "
            f"std {cv.accuracy_std:.4f}). Recall: "
            f"{', '.join(f'{c} {v}' for c, v in cv.per_class_recall.items())}."
        )
    ood_text = f"Not measured in this run (collect the set once with `{TRAIN_COMMAND} ood`)."
    if ood:
        ood_text = "`make ood`'s pictures:\n\n" + _other_table(
            "category", ood.per_category, "all", ood.all
        )
    return f"""## Results on the held-out test split
All sources together: accuracy **{test.all.accuracy}**.

{_tables(test.all)}

![confusion matrix](confusion_matrix.png)

{per_source}
### Held-out ImageNet classes answered "Other", by kind
{kinds}

### Course set, cross-validated
{cv_text}

### Other pictures
{ood_text}

![training curves](training_curves.png)

Serving check: {check.same_prediction} of {check.files} test files gave the same answer through
`kto.inference`, largest probability difference {check.max_abs_probability_diff:.1e}.
"""


def _tables(section: Section) -> str:
    labels, matrix = section.confusion_matrix.labels, section.confusion_matrix.matrix
    per_class = "\n".join(
        f"| {cls} | {v.precision_ci} | {v.recall_ci} | {v.f1:.3f} | {v.support} |"
        for cls, v in section.per_class.items()
    )
    confusion = [(f"**{label}**", *row) for label, row in zip(labels, matrix, strict=True)]
    corner = "true \\ predicted"
    return f"""| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per_class}

{_table((corner, *labels), confusion)}"""


def _other_table(key: str, shares: dict[str, Proportion], total: str, p: Proportion) -> str:
    return _table((key, "answered Other"), [*shares.items(), (f"**{total}**", p)])
