"""TensorFlow process settings, applied only when a caller asks (never at import)."""

from __future__ import annotations


def configure_threads(intra_op: int | None = None, inter_op: int | None = None) -> None:
    """Set TensorFlow's thread pools; must run before TensorFlow executes anything.

    ``None`` (or 0) keeps TensorFlow's default (one thread per core). Raises RuntimeError when
    TensorFlow has already started with other values, as the change would have no effect.
    """
    import tensorflow as tf

    if intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
