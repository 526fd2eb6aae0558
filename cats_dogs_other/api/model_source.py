"""Resolve ``MODEL_URI`` (an MLflow model URI) into a local model file at start-up.

Supported: ``models:/<name>/<version>``, ``models:/<name>@<alias>`` and
``runs:/<run_id>/<artifact path>`` (the training pipeline logs its model directory under
``model``). The tracking server comes from ``MLFLOW_TRACKING_URI`` (or ``tracking_uri``). Only
the MLflow client is needed, so ``mlflow-skinny`` is enough for an HTTP tracking server.

Immutable URIs (a version number, a run) are cached in ``cache_dir`` and reused on restart, so
a server whose tracking server is briefly down still starts; an alias is looked up every time.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

SUPPORTED = "models:/<name>/<version>, models:/<name>@<alias> or runs:/<run_id>/<path>"
MODEL_FILENAMES = ("model.onnx", "model.keras", "model.h5")
_COMPLETE = ".complete"
_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))/?$")
_RUNS = re.compile(r"^runs:/(?P<run_id>[0-9A-Za-z_-]+)/(?P<path>.+?)/?$")


class ModelSourceError(RuntimeError):
    """MODEL_URI cannot be resolved; the message says what to fix."""


@dataclass(frozen=True)
class ParsedUri:
    kind: str
    """'models' or 'runs'."""
    name: str = ""
    version: str = ""
    alias: str = ""
    run_id: str = ""
    path: str = ""


def parse_model_uri(uri: str) -> ParsedUri:
    uri = uri.strip()
    if m := _MODELS.match(uri):
        version = m["version"] or ""
        if version and not version.isdigit():
            raise ModelSourceError(
                f"MODEL_URI {uri!r}: the version must be a number (stages such as "
                f"'{version}' are deprecated in MLflow); use models:/{m['name']}/<n> or "
                f"models:/{m['name']}@<alias>"
            )
        return ParsedUri("models", name=m["name"], version=version, alias=m["alias"] or "")
    if m := _RUNS.match(uri):
        if ".." in Path(m["path"]).parts:
            raise ModelSourceError(f"MODEL_URI {uri!r}: the artifact path must not contain '..'")
        return ParsedUri("runs", run_id=m["run_id"], path=m["path"])
    raise ModelSourceError(f"MODEL_URI {uri!r} is not a supported MLflow URI; use {SUPPORTED}")


def resolve_model_uri(uri: str, cache_dir: Path, *, tracking_uri: str | None = None) -> Path:
    """Download (or reuse from ``cache_dir``) the model behind ``uri``; return its model folder.

    The folder is served like ``MODEL_PATH`` (its ``model.onnx`` when it has one). A Keras-only
    folder on an install without TensorFlow stops here with a one-line reason.
    """
    parsed = parse_model_uri(uri)
    client = _client(tracking_uri)
    if parsed.kind == "models" and parsed.alias:
        parsed = ParsedUri("models", name=parsed.name, version=_alias_version(client, parsed))
    if parsed.kind == "models":
        concrete = f"models:/{parsed.name}/{parsed.version}"
        key = Path("models") / _safe(parsed.name) / parsed.version
    else:
        concrete = f"runs:/{parsed.run_id}/{parsed.path}"
        key = Path("runs") / parsed.run_id / _safe(parsed.path)
    target = Path(cache_dir) / key
    if (target / _COMPLETE).is_file():
        log.info("model %s found in cache %s", concrete, target)
        return _model_folder(target, concrete)
    source = _version_source(client, parsed) if parsed.kind == "models" else concrete
    _download(concrete, source, target, client.tracking_uri)
    return _model_folder(target, concrete)


def _client(tracking_uri: str | None) -> MlflowClient:
    if not (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        # MLflow would fall back to a local ./mlflow.db, created as a side effect.
        raise ModelSourceError(
            "MODEL_URI needs MLFLOW_TRACKING_URI: set it to your MLflow tracking server, e.g. "
            "http://mlflow:5000, or unset MODEL_URI and use MODEL_PATH"
        )
    try:
        from mlflow import MlflowClient
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ModelSourceError(
            "MODEL_URI needs the MLflow client: pip install mlflow-skinny (or unset MODEL_URI "
            "and use MODEL_PATH)"
        ) from exc
    return MlflowClient(tracking_uri=tracking_uri)


def _alias_version(client: MlflowClient, parsed: ParsedUri) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(parsed.name, parsed.alias).version)
    except MlflowException as exc:
        raise _explain(exc, f"models:/{parsed.name}@{parsed.alias}", client.tracking_uri) from exc


def _version_source(client: MlflowClient, parsed: ParsedUri) -> str:
    """Where a registered version's files are, asked of THIS client's registry (a ``models:/``
    download would use the process-wide registry URI instead of ``tracking_uri``)."""
    from mlflow.exceptions import MlflowException

    uri = f"models:/{parsed.name}/{parsed.version}"
    try:
        client.get_model_version(parsed.name, parsed.version)
        return str(client.get_model_version_download_uri(parsed.name, parsed.version))
    except MlflowException as exc:
        raise _explain(exc, uri, client.tracking_uri) from exc
    except Exception as exc:  # network errors surface as requests/urllib3 exceptions
        raise ModelSourceError(
            f"cannot resolve {uri}: the MLflow tracking server {client.tracking_uri} did not "
            f"answer ({_first_line(exc)})"
        ) from exc


def _download(concrete: str, source: str, target: Path, tracking_uri: str) -> None:
    """Into a temporary folder beside ``target``, renamed when complete: no half-written cache."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        log.info("downloading %s from %s", concrete, tracking_uri)
        local = Path(
            download_artifacts(artifact_uri=source, dst_path=str(tmp), tracking_uri=tracking_uri)
        )
        root = local if local.is_dir() else local.parent
        (root / _COMPLETE).write_text(concrete + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        root.rename(target)
    except MlflowException as exc:
        raise _explain(exc, concrete, tracking_uri) from exc
    except OSError as exc:
        raise ModelSourceError(f"cannot store {concrete} in {target}: {exc}") from exc
    except Exception as exc:  # network errors surface as requests/urllib3 exceptions
        raise ModelSourceError(
            f"cannot download {concrete} from the MLflow tracking server {tracking_uri}: {exc}"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _explain(exc: Exception, uri: str, tracking_uri: str) -> ModelSourceError:
    code = str(getattr(exc, "error_code", ""))
    if "RESOURCE_DOES_NOT_EXIST" in code or "NOT_FOUND" in code or "not found" in str(exc):
        return ModelSourceError(
            f"{uri} does not exist on the MLflow tracking server {tracking_uri}: check the "
            f"model name, version, alias or run id (MLflow said: {_first_line(exc)})"
        )
    return ModelSourceError(
        f"cannot resolve {uri} on the MLflow tracking server {tracking_uri}: {_first_line(exc)}"
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _model_folder(directory: Path, uri: str) -> Path:
    """The folder holding the model files (the artifact root, or the first one below it)."""
    found = sorted(
        (p for p in directory.rglob("*") if p.name in MODEL_FILENAMES),
        key=lambda p: (len(p.parts), MODEL_FILENAMES.index(p.name)),
    )
    if not found:
        listing = ", ".join(sorted(p.name for p in directory.iterdir() if p.name != _COMPLETE))
        raise ModelSourceError(
            f"{uri} holds no model.onnx, model.keras or model.h5 (found: {listing or 'nothing'}); "
            "log the model directory written by `python -m cats_dogs_other.train` (artifact "
            "path 'model')"
        )
    folder = found[0].parent
    if not (folder / "model.onnx").is_file() and importlib.util.find_spec("tensorflow") is None:
        raise ModelSourceError(
            f"{uri} holds only a Keras model ({found[0].name}) and this install has no "
            "TensorFlow: install the Keras extra (pip install 'kto-keras-inference[keras]'), or "
            "export it first (python -m cats_dogs_other.train export --model DIR --data SOURCE, "
            "one --data per source it was trained on, or --images FOLDER) and register that"
        )
    return folder


def _safe(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", text).strip("._") or "_"
