"""Training pipeline for the cats/dogs/other classifier (``python -m cats_dogs_other.train``).

Transfer learning on a frozen MobileNetV2: features are extracted once per augmentation pass
and cached, a small head is trained on them, and the result is exported as ONE Keras model that
takes raw RGB 0..255 pixels, so serving needs nothing but ``kto.inference``.

Modules by responsibility:

- collection: ``dataset`` (one source's labelled files), ``sources`` (every source as one pool
  of unique images with features), ``dedupe``, ``kinds``, ``features``, ``feature_cache``,
  ``split``, ``ood_collect`` (pictures from outside the sources);
- training: ``network`` (backbone, head, gate, exported model), ``heads``, ``selection`` (+ CV);
- calibration: ``calibration`` (the ``min_confidence`` rule);
- reporting: ``results`` (typed figures = metrics.json), ``evaluate``, ``ood``, ``stats``,
  ``card``, ``plots``, ``outputs`` (the model folder's files), ``tracking`` (MLflow);
- orchestration: ``config``, ``pipeline``, ``arguments`` + ``cli``, ``export``, ``versions``.
"""
