"""The fixed bucket edges of the top-probability histogram.

The API's ``/metrics`` histogram of each answer's top probability and the drift references a
training run stores in the model folder's metadata use these same edges, so live traffic can be
compared bucket by bucket with what the model saw on held-out data. Changing them invalidates
every stored reference: add new edges in a new constant instead.
"""

TOP_PROBABILITY_EDGES: tuple[float, ...] = (
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.98,
    0.99,
    0.995,
    0.999,
    1.0,
)
