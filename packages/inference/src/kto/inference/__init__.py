"""Safe image decoding and compiled Keras inference for the cats/dogs/other classifier.

``import kto.inference`` is cheap: TensorFlow/Keras load only when a model does.
"""

from kto.inference.decoding import (
    DEFAULT_MAX_PIXELS,
    MIN_CLASSIFIABLE_SIDE,
    SUPPORTED_FORMATS,
    decode_image,
)
from kto.inference.engine import Inference
from kto.inference.errors import (
    ImageTooComplexError,
    ImageTooLargeError,
    ImageUnverifiableError,
    InferenceError,
    InvalidImageError,
    ModelLoadError,
    ModelOutputError,
)
from kto.inference.metadata import Decision, ModelMetadata, Preprocessing
from kto.inference.runtime import configure_threads
from kto.inference.structure import DEFAULT_DECODE_LIMITS, DecodeLimits, check_structure

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DECODE_LIMITS",
    "DEFAULT_MAX_PIXELS",
    "MIN_CLASSIFIABLE_SIDE",
    "SUPPORTED_FORMATS",
    "Decision",
    "DecodeLimits",
    "ImageTooComplexError",
    "ImageTooLargeError",
    "ImageUnverifiableError",
    "Inference",
    "InferenceError",
    "InvalidImageError",
    "ModelLoadError",
    "ModelMetadata",
    "ModelOutputError",
    "Preprocessing",
    "__version__",
    "check_structure",
    "configure_threads",
    "decode_image",
]
