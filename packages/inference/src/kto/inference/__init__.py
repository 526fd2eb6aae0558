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
    ImageTooLargeError,
    InferenceError,
    InvalidImageError,
    ModelLoadError,
)
from kto.inference.metadata import Decision, ModelMetadata, Preprocessing
from kto.inference.runtime import configure_threads

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MIN_CLASSIFIABLE_SIDE",
    "SUPPORTED_FORMATS",
    "Decision",
    "ImageTooLargeError",
    "Inference",
    "InferenceError",
    "InvalidImageError",
    "ModelLoadError",
    "ModelMetadata",
    "Preprocessing",
    "__version__",
    "configure_threads",
    "decode_image",
]
