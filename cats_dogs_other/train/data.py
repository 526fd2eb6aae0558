"""What every learning step reads: config, pool, split. The run record (run.py) starts with it."""

from __future__ import annotations

from dataclasses import dataclass

from cats_dogs_other.train.config import TrainConfig
from cats_dogs_other.train.sources import Pool
from cats_dogs_other.train.split import Split


@dataclass
class Data:
    cfg: TrainConfig
    pool: Pool
    split: Split
