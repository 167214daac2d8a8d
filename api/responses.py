"""A JSON response for the hot read endpoints, encoded once by pydantic-core's Rust encoder.

A handler that returns a plain dict has FastAPI validate it against the return annotation
(`dict[str, Any]`, in another trip through the thread pool for a `def` handler) before
encoding it. For a page of 100 tickets that validation is pure overhead: the dict is built
by our own code in the seed's exact shape. Returning this response skips it; the output is
the same compact UTF-8 JSON as FastAPI's own.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json
from starlette.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return to_json(content)
