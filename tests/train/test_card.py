"""The model card is rendered from the typed results: the bundled metrics.json gives back the
committed card's sections, tables and figures."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

from kto.inference.model import file_sha256

from cats_dogs_other.train.paths import REPO_ROOT
from cats_dogs_other.train.provenance import Provenance, describe_run
from cats_dogs_other.train.reporting.card import DECISIONS_PAGE, render_card
from cats_dogs_other.train.reporting.int8 import CARD_HEADING as INT8_HEADING
from cats_dogs_other.train.results import FineTuneReport, Metrics
from cats_dogs_other.train.versions import BUNDLED_MODEL


def folder_card(model_dir: Path, provenance: Provenance) -> str:
    """The card a model folder's own records give, in the order the commands that write them
    run: training (metrics.json), export (metadata.json ``exported``), calibration, int8."""
    from cats_dogs_other.train.export import card_section as export_section
    from cats_dogs_other.train.quantize import card_section as int8_section
    from cats_dogs_other.train.reporting.calibrate import card_section as calibration_section

    metrics = Metrics.read(model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    later = [
        (lambda exported: export_section(exported, meta.get("int8")), meta.get("exported")),
        (calibration_section, metrics.calibration),
        (int8_section, metrics.int8),
    ]
    card = render_card(metrics, provenance)
    for section, record in later:
        if record:
            card = card.rstrip("\n") + "\n\n" + section(record)
    return card


def _committed() -> str:
    return (BUNDLED_MODEL / "MODEL_CARD.md").read_text()


def _command() -> str:
    command = re.search(r"## Reproduce\n```\n(.*)\n```", _committed())
    assert command is not None
    return command.group(1)


def _rendered(metrics: Metrics) -> str:
    """The card as the run and the later commands write it (export, calibration, int8)."""
    assert metrics == Metrics.read(BUNDLED_MODEL)
    return folder_card(BUNDLED_MODEL, Provenance(command=_command()))


def _lines(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(pattern, line)]


def test_the_bundled_card_has_the_same_sections(bundled_metrics: Metrics) -> None:
    assert _lines(_rendered(bundled_metrics), "#") == _lines(_committed(), "#")


def test_the_bundled_card_has_the_same_tables_and_figures(bundled_metrics: Metrics) -> None:
    rendered = _rendered(bundled_metrics)
    assert _lines(rendered, r"\|") == _lines(_committed(), r"\|")
    assert _lines(rendered, r"!\[") == _lines(_committed(), r"!\[")
    cv = bundled_metrics.cross_validation
    assert cv is not None and f"pooled accuracy **{cv.pooled}**" in rendered
    assert rendered.endswith(_committed().split("## Reproduce", 1)[1])


def test_a_run_without_cv_ood_or_rule_says_so(bundled_metrics: Metrics) -> None:
    bare = replace(bundled_metrics, cross_validation=None, ood=None, confidence_rule=None)
    card = render_card(bare, Provenance())
    assert "### Course set, cross-validated\nNot run." in card
    assert "Confidence rule: not tried in this run." in card
    assert "Not measured in this run" in card
    assert "python -m cats_dogs_other.train ..." in card


def _tuning(kept: bool) -> FineTuneReport:
    return FineTuneReport(
        first_layer="block_16_expand",
        trained_on=["imagenet_samples", "pets_breeds"],
        images=1481,
        views=["clean", "flip"],
        trainable_weights=879040,
        epochs_run=5,
        best_epoch=2,
        learning_rate=3e-5,
        weight_decay=1e-4,
        val_loss_frozen=0.03,
        val_loss_best=0.02 if kept else 0.04,
        kept=kept,
        seconds=40.0,
    )


def test_the_card_says_what_fine_tuning_did(bundled_metrics: Metrics) -> None:
    untried = replace(bundled_metrics, fine_tuning=None)
    assert "top block: not tried in this run." in render_card(untried, Provenance())
    kept = render_card(replace(bundled_metrics, fine_tuning=_tuning(True)), Provenance())
    assert "`mobilenet_v2`, frozen below `block_16_expand`, fine-tuned from it on" in kept
    assert "top block: **on**, from `block_16_expand`" in kept
    assert "`imagenet_samples`, `pets_breeds` (n=1481, clean + mirrored views" in kept
    assert "best epoch 2 of 5, validation loss 0.02 against 0.03" in kept
    dropped = render_card(replace(bundled_metrics, fine_tuning=_tuning(False)), Provenance())
    assert "tried and **not kept**" in dropped and "`mobilenet_v2`, frozen." in dropped


def test_metrics_with_fine_tuning_round_trip(bundled_metrics: Metrics) -> None:
    tuned = replace(bundled_metrics, fine_tuning=_tuning(True))
    again = Metrics.from_json(json.loads(json.dumps(tuned.to_json())))
    assert again.fine_tuning == tuned.fine_tuning
    untried = replace(bundled_metrics, fine_tuning=None)
    assert "fine_tuning" not in untried.to_json()  # older metrics.json files stay readable
    assert Metrics.from_json(untried.to_json()).fine_tuning is None


def test_the_bundled_card_names_each_files_sha256_as_get_model_lists_them() -> None:
    """The int8 file served by default, the model.onnx it came from (float32 when pinned) and
    the model.keras that came from, by name, as the files are."""
    card = _committed()
    int8, onnx = (file_sha256(BUNDLED_MODEL / f) for f in ("model.int8.onnx", "model.onnx"))
    assert f"| `model.int8.onnx` | served by default | `{int8}` |" in card
    assert f"| `model.onnx` | served with `INFERENCE_PRECISION=f32` | `{onnx}` |" in card
    keras = file_sha256(BUNDLED_MODEL / "model.keras")
    assert f"| `model.keras` | trained, exported from | `{keras}` |" in card
    assert f"| trained file | `model.keras`, 12.3 MB, sha256 `{keras[:16]}...`" in card


def test_the_bundled_card_is_exactly_its_render(shared_data: tuple[Path, Path]) -> None:
    """Nothing in the card is written by hand: its records and the sources' READMEs give it
    back byte for byte (``describe_run`` reads the READMEs, as a run does)."""
    data, weights = shared_data
    sources = [data.parent / s.name for s in Metrics.read(BUNDLED_MODEL).dataset.sources]
    provenance = describe_run(sources, weights, shlex.split(_command())[3:])
    assert provenance.command == _command()
    assert folder_card(BUNDLED_MODEL, provenance) == _committed()


def test_the_card_names_the_runs_backbone_and_only_its_own_figures(
    bundled_metrics: Metrics,
) -> None:
    """The tiny test backbone's card: no MobileNetV2, no development measurement (those are
    stated once, in the docs page the card names)."""
    model = replace(bundled_metrics.model, backbone="tiny")
    card = render_card(replace(bundled_metrics, model=model), Provenance())
    assert "MobileNetV2" not in card and "`tiny` backbone features" in card
    assert "Backbone: `tiny`" in card and "Weights: random (the `tiny` test backbone)." in card
    page = " ".join((REPO_ROOT / DECISIONS_PAGE).read_text().split())
    for dev_figure in ("1,085 answers", "152/154", "block_14_expand", "288 px", "17.7 MB"):
        assert dev_figure in page and dev_figure not in card
    assert f"`{DECISIONS_PAGE}`" in card


def test_a_folder_card_adds_only_the_sections_its_records_hold(tmp_path: Path) -> None:
    """Straight after training (no export, calibration or int8 yet) the folder's card is the
    run's part alone; each record the later commands add brings its own section."""
    metrics = json.loads((BUNDLED_MODEL / "metrics.json").read_text())
    meta = json.loads((BUNDLED_MODEL / "metadata.json").read_text())
    trained = {k: v for k, v in metrics.items() if k not in ("calibration", "int8")}
    (tmp_path / "metrics.json").write_text(json.dumps(trained))
    (tmp_path / "metadata.json").write_text(json.dumps({**meta, "exported": None}))
    provenance = Provenance(command=_command())
    card = folder_card(tmp_path, provenance)
    assert card == render_card(Metrics.from_json(trained), provenance)
    assert "## Served runtime" not in card and "## Confidence" not in card
    (tmp_path / "metrics.json").write_text(json.dumps({**trained, "int8": metrics["int8"]}))
    headings = _lines(folder_card(tmp_path, provenance), "## ")
    assert headings[-2:] == ["## Reproduce", INT8_HEADING]
