"""Training pipeline for the cats/dogs/other classifier (``python -m cats_dogs_other.train``)."""
