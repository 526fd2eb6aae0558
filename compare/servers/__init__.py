"""One small FastAPI app per validator, each written the way its documentation shows.

They run in the throwaway environment (``.compare/venv``), never in the project's, and serve this
API's route, ``POST /upload`` with the multipart field ``file``, guarded by the library, plus
``GET /health``. The route only counts the bytes it received: the comparison is about who gets in.
"""
