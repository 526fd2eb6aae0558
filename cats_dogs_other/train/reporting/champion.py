"""Champion and challenger: a new model replaces the one in service only when, on the test
photos both runs held out, it is not worse on any source x class target (the rules, stated once:
``RULES_PAGE``)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kto.inference import Inference, ModelLoadError

from cats_dogs_other.train.errors import TrainingError
from cats_dogs_other.train.reporting import calibrate
from cats_dogs_other.train.reporting.card import TARGETS
from cats_dogs_other.train.reporting.heldout import classes_of, read_metrics
from cats_dogs_other.train.reporting.record import markdown_table, put_card_section, update_json
from cats_dogs_other.train.sources import list_sources

ALPHA = 0.05
SMALL_N = 50
SMALL_SLACK = 1
MIN_N = 1
RULES = {"alpha": ALPHA, "small_n": SMALL_N, "small_slack": SMALL_SLACK, "min_n": MIN_N}
Answers = Sequence[int]  # class indices, one per photo
CARD_HEADING = "## Champion and challenger"
RULES_PAGE = "docs/retraining.md"


@dataclass(frozen=True)
class TargetComparison:
    name: str
    n: int
    champion_right: int
    challenger_right: int
    only_champion: int  # photos only the champion answers right (McNemar's b)
    only_challenger: int
    p_worse: float
    bar: float | None
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class GateResult:
    champion: str
    challenger: str
    targets: tuple[TargetComparison, ...]

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.targets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "passed": self.passed,
            "rules": RULES,
            "targets": [asdict(t) for t in self.targets],
        }

    def table(self) -> str:
        return table(self.to_dict())


def mcnemar_p_worse(only_champion: int, only_challenger: int) -> float:
    """One-sided exact McNemar: P(X >= b), X ~ Binomial(b + c, 1/2)."""
    n = only_champion + only_challenger
    return sum(math.comb(n, k) for k in range(only_champion, n + 1)) / 2**n


def compare(
    name: str, labels: Answers, champion: Answers, challenger: Answers, bar: float | None
) -> TargetComparison:
    right_a = [a == y for a, y in zip(champion, labels, strict=True)]
    right_b = [b == y for b, y in zip(challenger, labels, strict=True)]
    only_a = sum(a and not b for a, b in zip(right_a, right_b, strict=True))
    only_b = sum(b and not a for a, b in zip(right_a, right_b, strict=True))
    n, k_a, k_b = len(labels), sum(right_a), sum(right_b)
    p = mcnemar_p_worse(only_a, only_b)
    failures = []
    if n < MIN_N:
        failures.append(f"fewer than {MIN_N} photos in common")
    if p < ALPHA:
        failures.append(f"worse by McNemar (p={p:.3g} < {ALPHA})")
    if n < SMALL_N and (n - k_b) > (n - k_a) + SMALL_SLACK:
        failures.append(f"{(n - k_b) - (n - k_a)} more mistakes on a target of n < {SMALL_N}")
    if bar is not None and n and k_a / n >= bar > k_b / n:
        failures.append(f"misses the bar {bar} the champion meets")
    return TargetComparison(name, n, k_a, k_b, only_a, only_b, round(p, 4), bar, tuple(failures))


def common_test_files(champion_dir: Path, challenger_dir: Path) -> list[str]:
    held = set(read_metrics(champion_dir).split.test_files)
    return [name for name in read_metrics(challenger_dir).split.test_files if name in held]


def answers(model_dir: Path, paths: Sequence[Path], classes: tuple[str, ...]) -> list[int]:
    """The served prediction of each file as an index into ``classes`` (by name: a model may
    order its classes otherwise)."""
    try:
        inference = Inference(model_dir, warmup=False)
    except ModelLoadError as exc:
        raise TrainingError(f"cannot load the model {model_dir}: {exc}") from exc
    _, predictions = calibrate.answers(
        inference, calibrate.raw_probs(inference, paths), inference.metadata
    )
    return [classes.index(p) if p in classes else -1 for p in predictions]


def run_gate(
    champion_dir: Path, challenger_dir: Path, data: Sequence[Path], champion_label: str = ""
) -> GateResult:
    classes = classes_of(read_metrics(challenger_dir))
    names = common_test_files(champion_dir, challenger_dir)
    found = {
        f"{info.name}/{s.name}": (s.path, s.label)
        for info, samples in list_sources(list(data), classes)
        for s in samples
    }
    if missing := [n for n in names if n not in found]:
        raise TrainingError(
            f"{len(missing)} held-out files are not in the --data sources (first: {missing[0]})"
        )
    paths, labels = [found[n][0] for n in names], [found[n][1] for n in names]
    champ, chall = (answers(d, paths, classes) for d in (champion_dir, challenger_dir))
    targets = [compare("all", labels, champ, chall, None)]
    for source, y in sorted({(n.split("/", 1)[0], y) for n, y in zip(names, labels, strict=True)}):
        idx = [i for i, n in enumerate(names) if labels[i] == y and n.startswith(source + "/")]
        y_, a, b = ([seq[i] for i in idx] for seq in (labels, champ, chall))
        bar = next((bar for s, cs, _, bar in TARGETS if s == source and classes[y] in cs), None)
        targets.append(compare(f"{source} {classes[y]}", y_, a, b, bar))
    return GateResult(champion_label or str(champion_dir), str(challenger_dir), tuple(targets))


def table(record: dict[str, Any]) -> str:
    """Markdown: the verdict and one row per target (from :meth:`GateResult.to_dict`)."""
    verdict = "passes" if record["passed"] else "FAILS"
    keys = ("name", "n", "champion_right", "challenger_right", "only_champion", "only_challenger")
    rows = []
    for t in record["targets"]:
        bar = "" if t["bar"] is None else t["bar"]
        rows.append([*(t[k] for k in keys), t["p_worse"], bar, "; ".join(t["failures"]) or "pass"])
    header = ("target", *(k.replace("_", " ") for k in keys[1:]), "p (worse)", "bar", "verdict")
    return (
        f"{CARD_HEADING}\n\nChallenger `{record['challenger']}` against champion "
        f"`{record['champion']}` on the test photos both held out: the challenger **{verdict}** "
        f"(rules: `{RULES_PAGE}`).\n\n{markdown_table(header, rows)}\n"
    )


def resolve_champion(spec: str, scratch: Path) -> tuple[Path, str]:
    """A model folder, or ``models:/NAME@ALIAS`` (``models:/NAME/VERSION``) from MLflow."""
    if not spec.startswith("models:/"):
        if not (Path(spec) / "metrics.json").is_file():
            raise TrainingError(f"champion {spec}: not a model folder with metrics.json")
        return Path(spec), spec
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=str(scratch))
    except (MlflowException, OSError) as exc:
        raise TrainingError(f"cannot fetch the champion {spec}: {exc}") from exc
    return Path(local), spec


def record(model_dir: Path, result: GateResult, run_id: str | None = None) -> None:
    """Into metrics.json, the card, the MLflow run and, in Actions, the step summary."""
    update_json(Path(model_dir) / "metrics.json", {"champion_gate": result.to_dict()})
    put_card_section(model_dir, result.table())
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(result.table() + "\n")
    if run_id:
        import mlflow

        with mlflow.start_run(run_id=run_id):
            mlflow.log_text(result.table(), "champion_gate.md")
            mlflow.log_dict(result.to_dict(), "champion_gate.json")
            mlflow.log_metric("champion_gate_passed", float(result.passed))


def refuse_unpromotable(model_dir: Path) -> None:
    """A model trained from a partial manifest, or one that failed the gate, is never
    promoted."""
    if not (Path(model_dir) / "metrics.json").is_file():
        return
    metrics = read_metrics(model_dir)
    if (metrics.manifest or {}).get("partial"):
        raise TrainingError(
            f"{model_dir} was trained from a partial dataset manifest: it is never promoted"
        )
    if metrics.champion_gate is not None and not metrics.champion_gate.get("passed"):
        raise TrainingError(f"{model_dir} failed the champion-and-challenger gate: not promoted")


def check_promotable(model_dir: Path, alias: str) -> None:
    """Before any work: a promotion needs a full run, ``NAME/VERSION`` and an MLflow server
    (an alias set in a local default store would be lost)."""
    refuse_unpromotable(model_dir)
    name, _, version = alias.rpartition("/")
    if not name or not version:
        raise TrainingError(f"--set-alias {alias!r}: expected NAME/VERSION")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise TrainingError("--set-alias needs MLFLOW_TRACKING_URI (the registry to promote in)")


def set_champion_alias(name: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, "champion", version)
