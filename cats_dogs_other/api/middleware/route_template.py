"""The route a request matched, as its path template: one label for the metrics and the access log.

A template (``/items/{item_id}``) rather than the raw URL, so a client probing random paths
cannot blow up the number of time series or fill the logs with its paths; anything no route
matched is ``unmatched``.
"""

from __future__ import annotations

from starlette.types import Scope

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The matched route's path template, or ``unmatched`` (a bounded set of values)."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED
