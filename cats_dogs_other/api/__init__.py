"""The resource server: FastAPI in front of the ``kto.inference`` wheel.

Build it with :func:`cats_dogs_other.api.app.create_app`; run it with ``python boot.py``.
"""
