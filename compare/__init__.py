"""Why not the course's validator? The same token battery against this API and other validators.

``python -m compare`` (``make compare``). Not part of the product: nothing here is imported by
the API, and the libraries compared live in a throwaway environment under ``.compare/``.
"""
