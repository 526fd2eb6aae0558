"""MODEL_CARD.md, written from metrics.json so the card can never disagree with the figures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cats_dogs_other.train.train import TrainConfig


def readme_paragraph(directory: Path | None, prefix: str) -> str | None:
    """The paragraph of ``directory/README.md`` that starts with ``prefix`` (e.g. "Source:"),
    without the prefix and up to any "Checked:" sentence (claims we measure ourselves)."""
    if directory is None:
        return None
    readme = Path(directory) / "README.md"
    if not readme.is_file():
        return None
    for para in re.split(r"\n\s*\n", readme.read_text(encoding="utf-8")):
        text = " ".join(para.split())
        if text.startswith(prefix):
            return text[len(prefix) :].split(" Checked:")[0].strip()
    return None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _per_class_table(section: dict[str, Any]) -> str:
    rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for cls, v in section["per_class"].items():
        rows.append(
            f"| {cls} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
        )
    return "\n".join(rows)


def _confusion_table(section: dict[str, Any]) -> str:
    labels = section["confusion_matrix"]["labels"]
    rows = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for label, row in zip(labels, section["confusion_matrix"]["matrix"], strict=True):
        rows.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(rows)


def _size_section(selection: dict[str, Any]) -> str:
    rows = [
        "| input size | CV accuracy (mean) | folds | ms / image alone | ms / image, batch of 32 |",
        "|---|---|---|---|---|",
    ]
    for c in selection["candidates"]:
        folds = ", ".join(f"{a:.3f}" for a in c.get("fold_accuracies", [])) or "n/a"
        rows.append(
            f"| {c['input_size']}x{c['input_size']} | {_pct(c.get('accuracy_mean'))} | {folds} "
            f"| {c['ms_single_image']} | {c['ms_per_image_batch32']} |"
        )
    side = selection["chosen"]
    return (
        "\n".join(rows)
        + f"\n\nChosen: **{side}x{side}** ({selection['reason']}). Timings are the frozen "
        "backbone alone on this machine's CPU, measured during training (a shared 2-core machine: "
        "expect noise of tens of percent)."
    )


def _ood_row(label: str, v: dict[str, Any]) -> str:
    without, with_rule = _pct(v["other_rate_without_rule"]), _pct(v["other_rate_with_rule"])
    return f"| {label} | {v['n']} | {without} | {with_rule} |"


def _weak_spots(ood: dict[str, Any] | None) -> str:
    """OOD categories still mostly answered Cat/Dog, named so nobody has to dig for them."""
    if not ood:
        return ""
    weak = [
        f"{c} ({v['n'] - v['predicted'].get('Other', 0)} of {v['n']} not answered Other)"
        for c, v in ood["per_category"].items()
        if v["other_rate_with_rule"] is not None and v["other_rate_with_rule"] < 0.5
    ]
    if not weak:
        return ""
    return f"- Known weak spots among the OOD images: {', '.join(weak)}.\n"


def _rules_text(model: dict[str, Any], details: dict[str, Any]) -> str:
    gate, decision = model.get("novelty_gate"), model.get("decision")
    lines = []
    if gate:
        g = details.get("novelty_gate", {})
        lines.append(
            f"1. **Novelty gate** (inside `model.keras`): an image whose backbone features have "
            f"cosine similarity below **{gate['threshold']}** to every one of the "
            f"{gate['reference_vectors']} training reference vectors (training images, clean "
            "and augmented) is answered Other. In-distribution accuracy on the calibration "
            f"images: {_pct(g.get('in_distribution_accuracy_without_rule'))} without it, "
            f"{_pct(g.get('in_distribution_accuracy_with_rule'))} with it."
        )
    else:
        lines.append("1. Novelty gate: none (no threshold helped without costing accuracy).")
    if decision:
        c = details.get("min_confidence", {})
        lines.append(
            f"2. **`min_confidence`** {decision['threshold']} -> {decision['fallback']} "
            "(in metadata.json, applied by the wheel) on what the gate lets through; "
            f"in-distribution {_pct(c.get('in_distribution_accuracy_without_rule'))} -> "
            f"{_pct(c.get('in_distribution_accuracy_with_rule'))}."
        )
    else:
        lines.append(
            "2. `min_confidence`: none (after the gate, no confidence threshold sent more OOD "
            "images to Other without costing in-distribution accuracy)."
        )
    return "\n".join(lines)


def _ood_section(ood: dict[str, Any] | None, model: dict[str, Any]) -> str:
    if not ood:
        return "Not measured in this run (no `--ood-dir`)."
    held, cal = ood["held_out"], ood["calibration"]
    cats = "\n".join(_ood_row(c, v) for c, v in ood["per_category"].items())
    details = ood.get("calibration_details") or {}
    checks = "".join(
        f"\n- in-distribution check `{c['file']}` (expected {c['expected']}): "
        f"{c['prediction']} ({c['confidence']:.2f})"
        for c in ood.get("in_distribution_checks", [])
    )
    return f"""Images that are neither cats nor dogs and unlike the training set's landscapes
(people, food, vehicles, objects, drawings, text, science images), collected by
`python -m cats_dogs_other.train ood` from pictures that Python and Debian packages ship
(set sha256 `{ood["sha256"][:16]}...`). None is used for training. Half of each category
(seeded) calibrates the rules, the other half only measures them. The in-distribution side of
the calibration is the {details.get("in_distribution_source", "validation split")}; the rules
may not cost any in-distribution accuracy there.

{_rules_text(model, details)}

| OOD images answered "Other" | n | classifier alone | as served (with the rules) |
|---|---|---|---|
{_ood_row("**held-out half**", held)}
{_ood_row("calibration half", cal)}
{cats}
{checks}"""


def render_card(metrics: dict[str, Any], cfg: TrainConfig) -> str:
    m, ds, test = metrics["model"], metrics["dataset"], metrics["test"]
    cv = metrics.get("cross_validation")
    cv_text = (
        f"**{_pct(cv['accuracy_mean'])}** mean (std {cv['accuracy_std']:.3f}) over "
        f"{cv['folds']} stratified folds: " + ", ".join(f"{a:.3f}" for a in cv["fold_accuracies"])
        if cv
        else "not run"
    )
    side = m["input_size"][0]
    timing = metrics["timing"]
    data_source = cfg.extra.get("data_source") or "supplied by the user of the pipeline."
    provenance = cfg.extra.get("backbone_provenance") or (
        "none (the `tiny` test backbone, random weights)"
        if cfg.backbone == "tiny"
        else "an ImageNet MobileNetV2 checkpoint."
    )
    command = cfg.extra.get("command", "python -m cats_dogs_other.train ...")
    sizes = metrics["split"]["sizes"]
    threads = timing["intra_op_threads"] or "all"
    latency = (
        f"{timing['ms_single_image']} ms for one image, "
        f"{timing['ms_per_image_batch32']} ms/image in a batch of 32"
    )
    per_class = ", ".join(f"{k}: {v}" for k, v in ds["per_class"].items())
    backbone = (
        "MobileNetV2 (alpha 1.0) with ImageNet weights, frozen"
        if cfg.backbone == "mobilenet_v2"
        else f"`{cfg.backbone}` (test network)"
    )
    fine_tuning = (
        f"top {cfg.fine_tune_layers} layers, "
        f"{metrics['training']['epochs_run'].get('fine-tuning', 0)} epochs"
        if cfg.fine_tune_layers
        else "off (`--fine-tune-layers 0`): the frozen features already pass the quality bar; "
        "measure what fine-tuning changes with `python -m cats_dogs_other.train cv "
        "--fine-tune-layers N`"
    )
    serving_diff = metrics["serving_check"]["max_abs_probability_diff"]
    epochs = ", ".join(f"{k}: {v}" for k, v in metrics["training"]["epochs_run"].items())
    weak = _weak_spots(metrics.get("ood"))
    skipped = f", {ds['skipped_count']} corrupt skipped" if ds["skipped_count"] else ""
    return f"""# Model card: {m["name"]} {m["version"]}

Classifies a photo as **Cat**, **Dog** or **Other**. Trained by `python -m cats_dogs_other.train`
on {metrics["trained_at"]}; served by the `kto-keras-inference` wheel (`kto.inference`).

| | |
|---|---|
| held-out test accuracy (as served) | **{_pct(test["accuracy"])}** (n={test["n"]}) |
| cross-validated accuracy | {cv_text} |
| input | RGB {side}x{side}, raw 0..255 (resize: Pillow bilinear in `kto.inference.decode_image`) |
| model file | `{m["file"]}`, {m["bytes"] / 1e6:.1f} MB, sha256 `{m["sha256"][:16]}...` |
| latency (CPU, {threads} threads) | {latency} |

## Intended use
Sorting everyday photos into cats, dogs and everything else, behind the project's API, e.g. to
route or tag uploads. Not for anything where a wrong answer harms someone, not for identifying
breeds or individual animals, not for surveillance.

## Data
`{ds["name"]}` ({ds["format"]} format), {ds["images_used"]} images used ({per_class}{skipped}),
sha256 `{ds["sha256"]}` (over file names, labels and contents).
Source: {data_source}

Split (stratified, seed {metrics["split"]["seed"]}): train {sizes["train"]}, validation
{sizes["val"]}, test {sizes["test"]}. The test images are used only for the figures below.

## Model
- Backbone: {backbone}. Provenance: {provenance}
- Preprocessing is **inside** the model (a Rescaling layer to [-1, 1]), so `metadata.json` says
  `"preprocessing": {{"mode": "none"}}` and the server only decodes and resizes: training and
  serving use the same `decode_image`, they cannot drift apart.
- Head: dropout {cfg.dropout} + softmax, L2 {cfg.l2}, trained on cached backbone features of
  the clean images plus {cfg.aug_passes} augmented copies (flip, rotation, zoom, shift,
  brightness, contrast); early stopping on validation loss.
- Fine-tuning of the backbone's top layers: {fine_tuning}.
- Epochs run: {epochs}.

### Input size
{_size_section(metrics["input_size_selection"])}

## Results on the held-out test split
As served (novelty gate and decision rule applied): accuracy **{_pct(test["accuracy"])}**;
classifier alone: {_pct(metrics["test_classifier_alone"]["accuracy"])}. Validation split:
{_pct(metrics["val"]["accuracy"])}.

{_per_class_table(test)}

{_confusion_table(test)}

![confusion matrix](confusion_matrix.png)

![training curves](training_curves.png)

Check: the test files were classified through `kto.inference` after saving; the largest
difference from the in-memory model's probabilities was {serving_diff:.1e}.

## Out-of-distribution images
{_ood_section(metrics.get("ood"), m)}

## Limits
- 192 images is a very small dataset: with {test["n"]} test images one mistake moves the test
  accuracy by {1 / max(test["n"], 1):.0%}; the cross-validated figure is the more reliable one.
- "Other" was learnt from landscapes only. Everything else relies on the rules above, which
  catch most but not all unfamiliar images; other animals, cartoon animals and close-ups of
  furry things are the most likely to be called Cat or Dog. Conversely, a real cat or dog photo
  very unlike the 150 training images (unusual angle, drawing, heavy filter) can be gated to
  Other.
{weak}- Images are squashed to a square without cropping; very elongated images lose detail.
- Photos taken in unusual light, heavy filters, or several animals in one picture were not
  represented in training.

## Reproduce
```
{command}
```
(`make train` runs exactly this with the shared data beside the repository.) Seeded; CPU
floating-point reductions can still move the last digits of the figures.
"""
