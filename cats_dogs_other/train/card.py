"""MODEL_CARD.md, written from metrics.json so the card can never disagree with the figures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cats_dogs_other.train.train import TrainConfig


def readme_paragraph(directory: Path | None, prefix: str) -> str | None:
    """The paragraph of ``directory/README.md`` starting with ``prefix`` (e.g. "Source:")."""
    if directory is None:
        return None
    readme = Path(directory) / "README.md"
    if not readme.is_file():
        return None
    for para in re.split(r"\n\s*\n", readme.read_text(encoding="utf-8")):
        if para.strip().startswith(prefix):
            return " ".join(para.split())
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
        "| input size | CV accuracy (mean) | folds | ms / image alone | ms / image in a batch of 32 |",
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
        "backbone alone on this machine's CPU, measured during training."
    )


def _ood_section(ood: dict[str, Any] | None, decision: dict[str, Any] | None) -> str:
    if not ood:
        return "Not measured in this run (no `--ood-dir`)."
    held, cal = ood["held_out"], ood["calibration"]
    cats = "\n".join(
        f"| {c} | {v['n']} | {_pct(v['other_rate_without_rule'])} | {_pct(v['other_rate_with_rule'])} |"
        for c, v in ood["per_category"].items()
    )
    rule = (
        f"`min_confidence` threshold **{decision['threshold']}** -> `{decision['fallback']}` "
        "(stored in metadata.json, applied by the wheel)"
        if decision
        else "no decision rule (no threshold improved the OOD answers without costing "
        "in-distribution accuracy)"
    )
    details = ood.get("calibration_details") or {}
    checks = "".join(
        f"\n- in-distribution check `{c['file']}` (expected {c['expected']}): "
        f"{c['prediction']} ({c['confidence']:.2f})"
        for c in ood.get("in_distribution_checks", [])
    )
    return f"""Images that are neither cats nor dogs and unlike the training set's landscapes (people,
food, vehicles, objects, drawings, text, science images), collected by
`python -m cats_dogs_other.train ood` from pictures that Python and Debian packages ship
(set sha256 `{ood['sha256'][:16]}...`). None is used for training. Half of each category
(seeded) chooses the threshold, the other half only measures it.

Decision rule: {rule}. Calibrated on the OOD calibration half and, for in-distribution images,
the {details.get('in_distribution_source', 'validation split')}: in-distribution accuracy
{_pct(details.get('in_distribution_accuracy_without_rule'))} without the rule,
{_pct(details.get('in_distribution_accuracy_with_rule'))} with it.

| OOD images answered "Other" | n | without rule | with rule |
|---|---|---|---|
| **held-out half** | {held['n']} | {_pct(held['other_rate_without_rule'])} | {_pct(held['other_rate_with_rule'])} |
| calibration half | {cal['n']} | {_pct(cal['other_rate_without_rule'])} | {_pct(cal['other_rate_with_rule'])} |
{cats}
{checks}"""


def render_card(metrics: dict[str, Any], cfg: TrainConfig) -> str:
    m, ds, test = metrics["model"], metrics["dataset"], metrics["test"]
    cv = metrics.get("cross_validation")
    cv_text = (
        f"**{_pct(cv['accuracy_mean'])}** mean (std {cv['accuracy_std']:.3f}) over "
        f"{cv['folds']} stratified folds: "
        + ", ".join(f"{a:.3f}" for a in cv["fold_accuracies"])
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
    skipped = f", {ds['skipped_count']} corrupt skipped" if ds["skipped_count"] else ""
    return f"""# Model card: {m['name']} {m['version']}

Classifies a photo as **Cat**, **Dog** or **Other**. Trained by `python -m cats_dogs_other.train`
on {metrics['trained_at']}; served by the `kto-keras-inference` wheel (`kto.inference`).

| | |
|---|---|
| held-out test accuracy (as served) | **{_pct(test['accuracy'])}** (n={test['n']}) |
| cross-validated accuracy | {cv_text} |
| input | RGB {side}x{side}, raw 0..255 (resize: Pillow bilinear in `kto.inference.decode_image`) |
| model file | `{m['file']}`, {m['bytes'] / 1e6:.1f} MB, sha256 `{m['sha256'][:16]}...` |
| latency (CPU, {timing['intra_op_threads'] or 'all'} threads) | {timing['ms_single_image']} ms for one image, {timing['ms_per_image_batch32']} ms/image in a batch of 32 |

## Intended use
Sorting everyday photos into cats, dogs and everything else, behind the project's API, e.g. to
route or tag uploads. Not for anything where a wrong answer harms someone, not for identifying
breeds or individual animals, not for surveillance.

## Data
`{ds['name']}` ({ds['format']} format), {ds['images_used']} images used ({', '.join(f'{k}: {v}' for k, v in ds['per_class'].items())}{skipped}),
sha256 `{ds['sha256']}` (over file names, labels and contents).
Source: {data_source}

Split (stratified, seed {metrics['split']['seed']}): train {sizes['train']}, validation
{sizes['val']}, test {sizes['test']}. The test images are used only for the figures below.

## Model
- Backbone: MobileNetV2 (alpha 1.0) with ImageNet weights, frozen. Provenance: {provenance}
- Preprocessing is **inside** the model (a Rescaling layer to [-1, 1]), so `metadata.json` says
  `"preprocessing": {{"mode": "none"}}` and the server only decodes and resizes: training and
  serving use the same `decode_image`, they cannot drift apart.
- Head: dropout {cfg.dropout} + softmax, L2 {cfg.l2}, trained on cached backbone features of
  the clean images plus {cfg.aug_passes} augmented copies (flip, rotation, zoom, shift,
  brightness, contrast); early stopping on validation loss.
- Fine-tuning of the backbone's top layers: {f"top {cfg.fine_tune_layers} layers, {metrics['training']['epochs_run'].get('fine-tuning', 0)} epochs" if cfg.fine_tune_layers else "off (the frozen features already reach the quality bar; fine-tuning 2.2 M parameters on 150 images mostly adds variance and CPU time)"}.
- Epochs run: {metrics['training']['epochs_run']}.

### Input size
{_size_section(metrics['input_size_selection'])}

## Results on the held-out test split
As served (decision rule applied): accuracy **{_pct(test['accuracy'])}**; plain argmax:
{_pct(metrics['test_without_decision']['accuracy'])}. Validation split: {_pct(metrics['val']['accuracy'])}.

{_per_class_table(test)}

{_confusion_table(test)}

![confusion matrix](confusion_matrix.png)

![training curves](training_curves.png)

Check: the test files were classified through `kto.inference` after saving; the largest
difference from the in-memory model's probabilities was {metrics['serving_check']['max_abs_probability_diff']:.1e}.

## Out-of-distribution images
{_ood_section(metrics.get('ood'), m.get('decision'))}

## Limits
- 192 images is a very small dataset: with {test['n']} test images one mistake moves the test
  accuracy by {1 / max(test['n'], 1):.0%}; the cross-validated figure is the more reliable one.
- "Other" was learnt from landscapes only. Everything else relies on the decision rule above,
  which catches some but not all unfamiliar images; close-ups of other animals and cartoon
  animals are the most likely to be called Cat or Dog.
- Images are squashed to a square without cropping; very elongated images lose detail.
- Photos taken in unusual light, heavy filters, or several animals in one picture were not
  represented in training.

## Reproduce
```
{command}
```
(`make train` runs exactly this with the shared data beside the repository.) Seeded; CPU
floating-point reductions can still move the last digits of the figures.
"""
