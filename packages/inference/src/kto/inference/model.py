"""Find, fingerprint and load a model file, and decide which backend runs it.

Keras (and so TensorFlow) is imported here lazily, so ``import kto.inference`` stays cheap and
an exported ``model.onnx`` is served without TensorFlow installed.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kto.inference.backends import BACKEND_CHOICES
from kto.inference.errors import ModelLoadError
from kto.inference.metadata import METADATA_FILENAME, Int8Record, ModelMetadata

if TYPE_CHECKING:
    import keras
    from kto.inference.backends import BackendChoice, BackendName

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
ONNX_SUFFIX = ".onnx"
ONNX_FILENAME = "model.onnx"
INT8_FILENAME = "model.int8.onnx"
Precision = Literal["f32", "int8"]
PrecisionChoice = Literal["auto", "f32", "int8"]
PRECISIONS: tuple[Precision, ...] = ("f32", "int8")
PRECISION_CHOICES: tuple[PrecisionChoice, ...] = ("auto", *PRECISIONS)
# The runtimes ``auto`` serves a folder's model.int8.onnx on. OpenVINO reads the same QDQ file
# but runs its own int8 kernels, whose answers differ from ONNX Runtime's int8 (the file is
# judged on ONNX Runtime's; docs/performance.md), so ``auto`` stays float32 there.
AUTO_INT8_BACKENDS: tuple[BackendName, ...] = ("onnx",)
_DIRECTORY_CANDIDATES = ("model.keras", "model.h5")
KERAS_HINT = "pip install 'kto-keras-inference[keras]' (Keras and TensorFlow)"


EXPORTED_BACKENDS: tuple[BackendName, ...] = ("onnx", "openvino")
# What ``auto`` runs an exported model.onnx with: ONNX Runtime, until a committed bench run
# shows OpenVINO ahead (the contended case wins ties; docs/performance.md). An ``openvino``
# here falls back to ONNX Runtime where the extra is not installed.
AUTO_EXPORTED_BACKEND: BackendName = "onnx"


@dataclass(frozen=True)
class PrecisionDecision:
    """The precision a model is served in and why, in words for the start-up log and /model."""

    precision: Precision
    reason: str


def resolve_precision(
    model_path: str | Path,
    backend: BackendChoice = "auto",
    precision: PrecisionChoice = "auto",
    *,
    digests: FileDigests | None = None,
) -> Precision:
    """The precision ``precision`` stands for (see :func:`decide_precision`)."""
    return decide_precision(model_path, backend, precision, digests=digests).precision


def decide_precision(
    model_path: str | Path,
    backend: BackendChoice = "auto",
    precision: PrecisionChoice = "auto",
    *,
    digests: FileDigests | None = None,
) -> PrecisionDecision:
    """``auto`` serves a folder's ``model.int8.onnx`` on the runtimes of ``AUTO_INT8_BACKENDS``
    only when metadata.json's ``int8`` record says it is the default (it met the rule) and its
    hashes match the folder's int8 file and the ``model.onnx`` it was built from; float32
    otherwise. ``int8`` serves the file whatever the rule said, but refuses one the record
    shows was built from another ``model.onnx`` or changed since (:class:`ModelLoadError`).
    ``digests``: the load's :class:`FileDigests`, so the files are hashed once per load."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    path = Path(model_path).expanduser()
    digests = FileDigests() if digests is None else digests
    if precision == "f32":
        return PrecisionDecision("f32", "pinned (precision f32)")
    if precision == "int8":
        return PrecisionDecision("int8", _pinned_int8(path, digests))
    if backend == "keras":
        return PrecisionDecision("f32", "the keras backend runs float32 only")
    if not path.is_dir():
        if path.name == INT8_FILENAME:
            return PrecisionDecision("int8", f"the file named is {INT8_FILENAME}")
        return PrecisionDecision("f32", "a file named on its own")
    if not (path / INT8_FILENAME).is_file():
        return PrecisionDecision("f32", f"no {INT8_FILENAME} in the folder")
    if exported_backend(backend) not in AUTO_INT8_BACKENDS:
        return PrecisionDecision("f32", f"{INT8_FILENAME} is served by default on onnx only")
    record, problem = _int8_check(path, digests)
    if problem is not None or record is None:
        return PrecisionDecision("f32", f"{INT8_FILENAME} present but not served: {problem}")
    if not record.default:
        return PrecisionDecision(
            "f32", f"{INT8_FILENAME} present but not the default: the rule was not met"
        )
    return PrecisionDecision("int8", "the int8 record says it met the rule (metadata.json)")


def _pinned_int8(path: Path, digests: FileDigests) -> str:
    if not path.is_dir() or not (path / INT8_FILENAME).is_file():
        return "pinned (precision int8)"  # resolve_model says what is missing
    record, problem = _int8_check(path, digests)
    if problem is not None and record is not None:
        raise ModelLoadError(
            f"precision int8 refused: {problem}; quantize the model again "
            "(python -m cats_dogs_other.train quantize) or serve it in f32"
        )
    if problem is not None or record is None:
        return f"pinned (precision int8), unchecked: {problem}"
    return "pinned (precision int8)" + ("" if record.default else "; the rule was not met")


def _int8_check(folder: Path, digests: FileDigests) -> tuple[Int8Record | None, str | None]:
    """metadata.json's int8 record, and why it does not vouch for the folder's
    model.int8.onnx (None when it does)."""
    meta = folder / METADATA_FILENAME
    record = ModelMetadata.read(meta).int8 if meta.is_file() else None
    if record is None:
        return (
            None,
            f"{METADATA_FILENAME} has no int8 record (python -m cats_dogs_other.train quantize)",
        )
    if record.file != INT8_FILENAME:
        return record, f"the int8 record is about {record.file}, not {INT8_FILENAME}"
    source = folder / ONNX_FILENAME
    if not source.is_file() or digests.sha256(source) != record.source_sha256:
        return record, f"{INT8_FILENAME} was built from another {ONNX_FILENAME}"
    if digests.sha256(folder / INT8_FILENAME) != record.sha256:
        return record, f"{INT8_FILENAME} is not the file its record names (sha256 differs)"
    return record, None


def resolve_model(
    model_path: str | Path,
    backend: BackendChoice = "auto",
    precision: PrecisionChoice = "auto",
    *,
    digests: FileDigests | None = None,
) -> tuple[BackendName, Path]:
    """Which backend runs ``model_path`` and from which file.

    A file decides by its suffix (``.onnx`` -> ``AUTO_EXPORTED_BACKEND``, ``.keras``/``.h5`` ->
    Keras). A folder is served from its exported ``model.onnx`` when it has one (``auto``),
    else from ``model.keras`` / ``model.h5``; ``backend`` forces one runtime. ``precision``
    ``int8`` serves a folder's quantized ``model.int8.onnx`` instead, and fails when it has none;
    ``auto`` is :func:`resolve_precision`'s choice (``digests`` as there).
    """
    if backend not in BACKEND_CHOICES:
        choices = ", ".join(repr(c) for c in BACKEND_CHOICES)
        raise ValueError(f"backend must be one of {choices}, got {backend!r}")
    path = Path(model_path).expanduser()
    if resolve_precision(path, backend, precision, digests=digests) == "int8":
        return _resolve_int8(path, backend)
    if path.is_dir():
        exported = path / ONNX_FILENAME
        if backend in EXPORTED_BACKENDS or (backend == "auto" and exported.is_file()):
            if not exported.is_file():
                raise ModelLoadError(
                    f"no {ONNX_FILENAME} in directory {path}: export the Keras model first, "
                    "or use the keras backend"
                )
            return exported_backend(backend), exported
        return "keras", resolve_model_file(path)
    if path.is_file() and path.suffix.lower() == ONNX_SUFFIX:
        if backend == "keras":
            raise ModelLoadError(
                f"{path.name} is an ONNX model; the keras backend needs a .keras file"
            )
        return exported_backend(backend), path
    found = resolve_model_file(path)
    if backend in EXPORTED_BACKENDS:
        raise ModelLoadError(
            f"{path.name} is a Keras model; the {backend} backend needs its exported "
            f"{ONNX_FILENAME} (name the model folder or the .onnx file)"
        )
    return "keras", found


def _resolve_int8(path: Path, backend: BackendChoice) -> tuple[BackendName, Path]:
    """A folder's ``model.int8.onnx``, or a named ``.onnx`` file (taken as the int8 one)."""
    if backend == "keras":
        raise ModelLoadError("precision int8 runs an exported .onnx file; keras runs float32 only")
    file = path / INT8_FILENAME if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        raise ModelLoadError(
            f"precision int8 asked for, but {path} has no {INT8_FILENAME}: quantize the model "
            "(python -m cats_dogs_other.train quantize) or serve it in f32"
        )
    if not file.is_file() or file.suffix.lower() != ONNX_SUFFIX:
        raise ModelLoadError(f"precision int8 needs a model folder or an .onnx file, not {path}")
    return exported_backend(backend), file


def exported_backend(backend: BackendChoice) -> BackendName:
    """The runtime for a model.onnx: the one named, or ``auto``'s (OpenVINO only if installed)."""
    if backend != "auto":
        return backend
    if AUTO_EXPORTED_BACKEND == "openvino":
        from kto.inference.backends.openvino_backend import openvino_available

        return "openvino" if openvino_available() else "onnx"
    return AUTO_EXPORTED_BACKEND


def resolve_model_file(model_path: str | Path) -> Path:
    """A model file, or a directory holding ``model.keras`` (or ``model.h5``)."""
    path = Path(model_path).expanduser()
    if path.is_dir():
        for name in _DIRECTORY_CANDIDATES:
            if (path / name).is_file():
                return path / name
        raise ModelLoadError(f"no model.keras or model.h5 in directory {path}")
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelLoadError(
            f"{path.name}: unsupported model format; expected a Keras 3 .keras file, "
            "a legacy .h5 file or an exported .onnx file"
        )
    return path


def file_sha256(path: Path) -> str:
    return _identified_sha256(path)[1]


# What os.stat says about a file that changes when its bytes may have: device, inode, size,
# mtime and ctime (a write or a rename-over changes one; utime cannot set ctime back).
_Identity = tuple[int, int, int, int, int]


class FileDigests:
    """The sha256 of each file one model load reads, each file read and hashed once.

    One start-up checks model.onnx and model.int8.onnx against metadata.json's int8 record
    while choosing the precision, again while choosing the file, fingerprints the served file
    and lists the folder's files in /model: passed along, one FileDigests reads each of them
    once. A file whose ``os.stat`` identity (device, inode, size, mtime, ctime) changed since
    it was hashed is hashed again, so a digest is never older than the file's last change
    that stat shows. Thread-safe (/model asks from a worker thread); no process-wide state.
    """

    def __init__(self) -> None:
        self._known: dict[Path, tuple[_Identity, str]] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        with self._lock:
            known = self._known.get(path)
            if known is not None and known[0] == _identity(path.stat()):
                return known[1]
            self._known[path] = _identified_sha256(path)
            return self._known[path][1]


def _identity(stat: os.stat_result) -> _Identity:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _identified_sha256(path: Path) -> tuple[_Identity, str]:
    """The digest of the bytes read, and the identity of the file they were read from, taken
    before reading: a file changed while it is read shows another identity next time."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        identity = _identity(os.fstat(fh.fileno()))
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return identity, digest.hexdigest()


def load_keras_model(path: Path) -> keras.Model:
    """Load for inference only (``compile=False``: no optimizer state, no custom losses)."""
    try:
        import keras
        import tensorflow  # noqa: F401  - Keras' backend; its absence is the usual failure
    except ImportError as exc:
        raise ModelLoadError(
            f"{path.name} is a Keras model and this install has no Keras/TensorFlow: {KERAS_HINT}, "
            f"or serve the model's exported {ONNX_FILENAME}"
        ) from exc

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, h5py errors...
        raise ModelLoadError(f"cannot load Keras model {path}: {exc}") from exc
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path} does not contain a Keras model")
    return model


def input_size_of(model: Any) -> tuple[int, int] | None:
    """The (height, width) the model declares, or None when it accepts any size."""
    shape = _single_shape(model, "input")
    if len(shape) != 4 or shape[-1] != 3:
        raise ModelLoadError(f"the model's input must be (batch, height, width, 3), got {shape}")
    height, width = shape[1], shape[2]
    if height is None or width is None:
        return None
    return int(height), int(width)


def output_width_of(model: Any) -> int | None:
    shape = _single_shape(model, "output")
    if len(shape) != 2:
        raise ModelLoadError(f"the model's output must be (batch, classes), got {shape}")
    return None if shape[1] is None else int(shape[1])


def _single_shape(model: Any, which: str) -> tuple[Any, ...]:
    tensors = getattr(model, f"{which}s", None)
    if not tensors or len(tensors) != 1:
        raise ModelLoadError(f"the model must have exactly one {which}")
    return tuple(tensors[0].shape)
