"""Errors a person can act on; the CLI prints their message and exits with status 2."""

from __future__ import annotations


class TrainingError(Exception):
    """Anything wrong with the inputs of a training run."""


class DatasetError(TrainingError):
    """The labelled dataset cannot be used as it is."""


class ClassTooSmallError(DatasetError):
    """A class has too few images for the requested split or folds."""


class WeightsError(TrainingError):
    """The backbone weights file is missing or unusable."""


class MissingImagesError(DatasetError):
    def __init__(self, missing: list[str], image_dir: str) -> None:
        self.missing = missing
        shown = "\n".join(f"  - {name}" for name in missing[:50])
        more = f"\n  ... and {len(missing) - 50} more" if len(missing) > 50 else ""
        super().__init__(
            f"{len(missing)} labelled image(s) are missing from {image_dir}:\n{shown}{more}\n"
            "Add the files or remove their annotations."
        )


class UnknownLabelsError(DatasetError):
    def __init__(self, unknown: dict[str, list[str]], classes: tuple[str, ...]) -> None:
        self.unknown = unknown
        lines = "\n".join(
            f"  - {label!r}: {len(files)} image(s), e.g. {files[0]}"
            for label, files in sorted(unknown.items())
        )
        super().__init__(
            f"unknown label(s) in the dataset:\n{lines}\nKnown classes: {', '.join(classes)} "
            "(case-insensitive); fix the labels or pass --classes."
        )
