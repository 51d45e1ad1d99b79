"""A vLLM route, ``POST /cord/spans``: a round's (prefix, full) pairs tokenized in one request.

Runs inside vLLM's API server (``--middleware cord_spans.spans_route``, with this folder on
``PYTHONPATH``), never in the proxy. Each side of a pair goes through vLLM's own ``/tokenize``
handler, so its ids are exactly those ``/tokenize`` answers; identical sides within a request
are tokenized once. What the route takes and answers: cord_spans_wire.py. Every other request
passes on untouched. Like ``/tokenize``, the route is outside vLLM's ``--api-key`` guard.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from cord_spans_wire import (  # type: ignore[import-not-found, unused-ignore]
    ROUTE,
    error_entry,
    pair_entry,
    pairs_of,
)
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request  # type: ignore[import-not-found, unused-ignore]
from starlette.responses import JSONResponse, Response  # type: ignore[import-not-found, unused-ignore]
from vllm.entrypoints.serve.engine.protocol import (  # type: ignore[import-not-found, unused-ignore]
    ErrorResponse,
)
from vllm.entrypoints.serve.tokenize.protocol import (  # type: ignore[import-not-found, unused-ignore]
    TokenizeRequest,
)

# a side's ids, pieces and the server's context; or its error entry
Tokenized = tuple[list[int], list[str] | None, int] | dict[str, Any]
_REQUEST: TypeAdapter[Any] = TypeAdapter(TokenizeRequest)


async def spans_route(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    if request.url.path != ROUTE:
        return await call_next(request)
    if request.method != "POST":
        return _refused(405, f"{ROUTE} takes POST")
    try:
        body = json.loads(await request.body())
        pairs = pairs_of(body)
    except OverflowError as error:
        return _refused(413, str(error))
    except (ValueError, RecursionError) as error:  # not JSON, or not a spans request
        return _refused(400, str(error))
    sides = _Sides(request, body.get("model"))
    entries = await asyncio.gather(*(sides.entry(prefix, full) for prefix, full in pairs))
    return JSONResponse({"spans": entries})


class _Sides:
    """The prompts of one request, each tokenized once."""

    def __init__(self, request: Request, model: Any) -> None:
        self.request = request
        self.model = model
        self.asked: dict[str, asyncio.Future[Tokenized]] = {}

    def tokenized(self, fields: dict[str, Any], with_pieces: bool) -> asyncio.Future[Tokenized]:
        asked = {**fields, "model": self.model, "return_token_strs": with_pieces}
        key = json.dumps(asked, sort_keys=True)
        if key not in self.asked:
            self.asked[key] = asyncio.ensure_future(_tokenize(self.request, asked))
        return self.asked[key]

    async def entry(self, prefix: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
        """The pair's span, or the first error of its sides."""
        sides = await asyncio.gather(self.tokenized(prefix, False), self.tokenized(full, True))
        found: dict[str, Any] = pair_entry(*sides)
        return found


async def _tokenize(request: Request, fields: dict[str, Any]) -> Tokenized:
    """One side as vLLM's ``/tokenize`` handler answers it, or the error it would give."""
    try:
        asked = _REQUEST.validate_python(fields)
    except ValidationError as error:
        return _error(f"invalid tokenize request: {error.errors()[0]['msg']}", 400)
    try:
        answer = await request.app.state.serving_tokenization.create_tokenize(asked, request)
    except (ValueError, TypeError, KeyError) as error:  # a template that refuses the messages
        return _error(str(error), 400)
    except Exception as error:  # as vLLM's own handler answers any other failure
        return _error(f"{type(error).__name__}: {error}", 500)
    if isinstance(answer, ErrorResponse):
        return _error(answer.error.message, answer.error.code)
    ids: list[int] = answer.tokens
    pieces: list[str] | None = answer.token_strs
    context: int = answer.max_model_len
    return ids, pieces, context


def _error(message: str, code: int) -> dict[str, Any]:
    entry: dict[str, Any] = error_entry(message, code)
    return entry


def _refused(status: int, message: str) -> JSONResponse:
    error = {"message": message, "type": "BadRequestError", "param": None, "code": status}
    return JSONResponse({"error": error}, status_code=status)
