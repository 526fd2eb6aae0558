"""Why not another validator? The same token battery against this API and three other ones.

``python -m compare`` (``make compare``). Not part of the product: nothing here is imported by
the API, and the libraries compared live in a throwaway environment under ``.compare/``.
"""

import warnings

# The battery signs its tokens with the test suite's helpers, which import Starlette's
# TestClient; its advice to switch HTTP client is noise for a command.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
