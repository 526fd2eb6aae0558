"""Training pipeline for the cats/dogs/other classifier (``python -m cats_dogs_other.train``).

Transfer learning on a frozen MobileNetV2: features are extracted once per augmentation pass
and cached, a small head is trained on them, and the result is exported as ONE Keras model that
takes raw RGB 0..255 pixels, so serving needs nothing but ``kto.inference``.
"""
