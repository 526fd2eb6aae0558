"""Confusion matrix and training curves as PNG (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str
) -> Path:
    plt = _pyplot()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=110)
    ax.imshow(m, cmap="Blues", vmin=0)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    threshold = m.max() / 2 if m.size else 0
    for (i, j), value in np.ndenumerate(m):
        color = "white" if value > threshold else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=12)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def training_curves_png(phases: Sequence[tuple[str, dict[str, list[float]]]], path: Path) -> Path:
    """Loss and accuracy per epoch, phases (head, fine-tuning) drawn one after the other."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    offset = 0
    for phase, history in phases:
        epochs = len(history.get("loss", []))
        x = np.arange(offset + 1, offset + epochs + 1)
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            if metric in history:
                ax.plot(x, history[metric], label=f"{phase}: train")
            if f"val_{metric}" in history:
                ax.plot(x, history[f"val_{metric}"], "--", label=f"{phase}: validation")
        if offset:
            for ax in axes:
                ax.axvline(offset + 0.5, color="grey", lw=0.8)
        offset += epochs
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("head on cached features (train = clean + augmented)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
