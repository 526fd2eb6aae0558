"""Every knob of a training run, with its default: the CLI declares its options from these.
A leaf (nothing of ``train`` at run time), so every step can take the config it is given."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kto.inference import DEFAULT_MAX_PIXELS
from kto.inference.metadata import DEFAULT_CLASSES

if TYPE_CHECKING:
    from cats_dogs_other.train.provenance import Provenance

Backbone = Literal["mobilenet_v2", "tiny"]
BACKBONES: tuple[Backbone, ...] = ("mobilenet_v2", "tiny")
Weighting = Literal["none", "class", "stratum"]
WEIGHTINGS: tuple[Weighting, ...] = ("none", "class", "stratum")
NOT_PARAMS = (
    *("data", "out", "weights", "cv_source", "cache_dir", "ood_dir", "classes", "fallback_class"),
    *("max_pixels", "progress", "tracking_uri", "experiment", "register_name", "provenance"),
)
"""Fields ``params()`` leaves out (paths and switches that do not change the model)."""


def _provenance() -> Provenance:
    """A run started without the CLI: no README quoted (imported here: config stays a leaf)."""
    from cats_dogs_other.train.provenance import Provenance

    return Provenance()


@dataclass
class TrainConfig:
    """``params()`` is what MLflow and metrics.json record, in field order."""

    data: tuple[Path, ...] | Path
    out: Path
    weights: Path | None = None
    backbone: Backbone = "mobilenet_v2"
    input_size: int = 224
    seed: int = 42
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 1e-3
    dropout: float = 0.3
    l2: float = 1e-4
    patience: int = 8
    aug_passes: int = 0  # randomly augmented copies (rotation, zoom, shift, light) besides flip
    val_fraction: float = 0.1
    calibration_fraction: float = 0.1
    test_fraction: float = 0.2
    cv_folds: int = 5
    cv_source: str | None = None  # the source cross-validated (default: the first ``--data``)
    hidden_candidates: tuple[int, ...] = (0, 256)  # 0 = linear softmax, N = N ReLU units first
    weighting_candidates: tuple[Weighting, ...] = ("stratum", "none", "class")
    """Within ``min_gain`` the earlier one wins (the model card says why ``stratum`` is first)."""
    tta_candidates: tuple[bool, ...] = (False, True)
    confidence_rule: bool = True
    familiarity_gate: bool = True
    gate_prototypes: int = 512  # k-means centres in the model: k x 1280 floats, 2.6 MB for 512
    refit: bool = True  # train the chosen head again on train + validation + calibration
    min_gain: float = 0.01
    """Macro recall a costlier choice (bigger head, mirror pass, rule) must gain on held-out
    data (about two validation images of the smallest class), so noise never buys latency."""
    fine_tune: bool = True  # kept only when it lowers the validation loss (see finetune.py)
    fine_tune_epochs: int = 20
    fine_tune_learning_rate: float = 3e-5
    fine_tune_weight_decay: float = 1e-4
    fine_tune_patience: int = 3
    cache_dir: Path | None = None
    ood_dir: Path | None = None
    classes: tuple[str, ...] = DEFAULT_CLASSES
    fallback_class: str = "Other"
    name: str = "cats-dogs-other"
    version: str = "1.0.0"
    max_pixels: int = DEFAULT_MAX_PIXELS
    progress: bool = True
    tracking_uri: str | None = None
    experiment: str = "cats-dogs-other"
    register_name: str | None = "cats-dogs-other"
    provenance: Provenance = field(default_factory=_provenance)

    @property
    def data_dirs(self) -> tuple[Path, ...]:
        return (Path(self.data),) if isinstance(self.data, str | Path) else tuple(self.data)

    @property
    def views(self) -> tuple[str, ...]:
        return ("clean", "flip", *(f"aug{k}" for k in range(1, self.aug_passes + 1)))

    @property
    def fallback(self) -> int:
        return self.classes.index(self.fallback_class)

    def params(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NOT_PARAMS}
        values |= {"classes": self.classes, "data": self.data_dirs}
        return {k: ",".join(map(str, v)) if isinstance(v, tuple) else v for k, v in values.items()}


FIELDS = frozenset(f.name for f in fields(TrainConfig))
DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING
}
