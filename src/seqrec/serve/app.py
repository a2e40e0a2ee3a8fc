"""The FastAPI application: request and response models, the endpoints (`POST /recommend`, `GET /health`,
`GET /model`) and the handlers that turn every validation, lookup and routing problem into a JSON 4xx."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from seqrec.recommend import Recommender, RecommendError
from seqrec.serve.batching import Batcher
from seqrec.serve.guards import BodyLimit, TokenAuth

log = logging.getLogger(__name__)

RawId = StrictInt | StrictStr


@dataclass(frozen=True)
class ServeSettings:
    """Bounds of the service; every request outside them is refused with a 4xx and a message."""

    max_k: int = 1000                 # largest k
    max_items: int = 10_000           # longest history, allow or deny list in one request
    max_body_bytes: int = 1_000_000   # largest request body
    max_batch: int = 64               # requests answered by one forward pass
    threads: int = 1                  # scoring threads (workers taking batches from the queue)


class RecommendRequest(BaseModel):
    """Body of `POST /recommend`: exactly one of `user` or `history`."""

    model_config = ConfigDict(extra="forbid")

    user: RawId | None = Field(None, description="a known user's raw id; their whole log is the history")
    history: list[RawId] | None = Field(None, description="raw item ids, oldest first")
    times: list[StrictInt] | None = Field(None, description="timestamps of the history's items, one each (only "
                                                            "for a model that reads them, e.g. time_bias: true)")
    ratings: list[StrictInt | StrictFloat] | None = Field(
        None, description="ratings of the history's items, one each (only for a model that reads them, e.g. "
                          "inputs: items_ratings or interleaved)")
    k: StrictInt = Field(10, description="number of items to return (1..max_k)")
    exclude_seen: StrictBool = Field(True, description="never recommend items of the history")
    allow: list[RawId] | None = Field(None, description="recommend only among these raw item ids")
    deny: list[RawId] | None = Field(None, description="never recommend these raw item ids (unknown ones are ignored)")
    ignore_unknown: StrictBool = Field(False, description="drop unknown item ids instead of refusing the request")


class ScoredItem(BaseModel):
    item: RawId
    score: float


class RecommendResponse(BaseModel):
    items: list[ScoredItem] = Field(description="best first")
    k: int
    history_length: int = Field(description="items in the resolved history")
    used_length: int = Field(description="most recent items the model read (at most its max_len)")
    truncated: bool = Field(description="the history was longer than the model reads")
    ignored: list[RawId] = Field(description="unknown item ids dropped (ignore_unknown)")
    note: str | None = None


class ErrorResponse(BaseModel):
    error: str
    field: str | None = None


def create_app(recommender: Recommender, settings: ServeSettings | None = None, *,
               api_key: str | None = None, on_stop: Callable[[], None] | None = None) -> ASGIApp:
    """The FastAPI application answering for `recommender` (see the module docstring); with `api_key`, every
    endpoint but /health needs it; `on_stop()` is called once the service has stopped (every request answered)."""
    settings = settings or ServeSettings()
    batcher = Batcher(recommender, settings.max_batch, settings.threads)
    description = recommender.describe()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            if on_stop is not None:
                on_stop()

    app = FastAPI(title="seqrec", version=_version(), lifespan=lifespan,
                  description=f"Top-k recommendations from a {description['model']} model "
                              f"({description['items']} items, {description['users']} users).")
    errors: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (422, 404, 400, 413)}

    @app.get("/health")
    async def health() -> dict:
        """Liveness: 200 once the model is loaded."""
        return {"status": "ok"}

    @app.get("/model")
    async def model_info() -> JSONResponse:
        """The model, its hyper-parameters, the data fingerprint and split, and its metrics."""
        return JSONResponse({**description, "limits": settings.__dict__})

    @app.post("/recommend", response_model=None, responses={200: {"model": RecommendResponse}, **errors})
    async def recommend(body: RecommendRequest) -> JSONResponse:
        """Top-k items for a known user or a raw item history, best first."""
        _check_bounds(body, settings)
        query, ignored = recommender.query(user=body.user, history=body.history, k=body.k,
                                           exclude_seen=body.exclude_seen, allow=body.allow, deny=body.deny,
                                           ignore_unknown=body.ignore_unknown, times=body.times,
                                           ratings=body.ratings)
        answer = await batcher.submit(query)
        answer.ignored = ignored
        out = answer.to_dict()
        out["k"] = body.k
        if answer.truncated:
            out["note"] = (f"history of {answer.history_length} items cut to the {answer.used_length} most recent "
                           "the model reads")
        return JSONResponse(out)

    for kind, handler in _HANDLERS.items():
        app.add_exception_handler(kind, handler)
    wrapped: ASGIApp = BodyLimit(app, settings.max_body_bytes) if settings.max_body_bytes else app
    return TokenAuth(wrapped, api_key) if api_key else wrapped


# Starlette types every handler as taking an Exception; each of these is registered for its own class only
async def _recommend_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RecommendError)
    return JSONResponse({"error": error.reason, "field": error.field}, status_code=error.status)


async def _invalid(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return _validation_response(error.errors())


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    message = error.detail if isinstance(error.detail, str) else str(error.detail)
    if error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "?")
        message = f"{message}: {request.method} {request.url.path}; allowed: {allowed}"
    if error.status_code == 404:
        message = f"{message}: {request.method} {request.url.path}; endpoints: POST /recommend, GET /health, " \
                  "GET /model, GET /docs"
    return JSONResponse({"error": message, "field": None}, status_code=error.status_code,
                        headers=getattr(error, "headers", None))


async def _unexpected(_request: Request, error: Exception) -> JSONResponse:  # a bug, not a bad request
    log.exception("unexpected error")
    return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}", "field": None},
                        status_code=500)


_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[JSONResponse]]] = {
    RecommendError: _recommend_error, RequestValidationError: _invalid, HTTPException: _http_error,
    Exception: _unexpected}


def _check_bounds(body: RecommendRequest, settings: ServeSettings) -> None:
    for name in ("history", "times", "ratings", "allow", "deny"):
        values = getattr(body, name)
        if values is not None and len(values) > settings.max_items:
            raise RecommendError(f"{name} has {len(values)} items; at most {settings.max_items} are accepted",
                                 field=name)
    if not 1 <= body.k <= settings.max_k:
        raise RecommendError(f"k must be between 1 and {settings.max_k}, got {body.k}", field="k")


def _validation_response(problems: Sequence[Any]) -> JSONResponse:
    """One readable message from pydantic's list of problems; 400 for unparseable JSON, 422 otherwise."""
    first: dict[str, Any] = problems[0] if problems else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        position = first["loc"][-1] if first.get("loc") else "?"
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        return JSONResponse({"error": f"malformed JSON body at character {position}: {reason}", "field": None},
                            status_code=400)
    messages, field, seen = [], None, set()
    for problem in problems[:10]:
        loc = [str(part) for part in problem.get("loc", ()) if part != "body"]
        if loc and loc[-1] in ("int", "str", "float"):  # one problem per member of `int | str`: say it once
            loc = loc[:-1]
            problem = {**problem, "msg": "a rating must be a number" if loc[:1] == ["ratings"]
                       else "an id must be an integer or a string"}
        where = ".".join(loc)
        if where in seen:
            continue
        seen.add(where)
        field = field or (loc[0] if loc else None)
        shown = ""
        if "input" in problem and problem.get("type") not in ("missing",):
            text = repr(problem["input"])
            shown = f" (got {text[:60] + '…' if len(text) > 60 else text})"
        if problem.get("type") == "extra_forbidden":
            messages.append(f"unknown field {where!r}; known: user, history, times, ratings, k, exclude_seen, "
                            "allow, deny, ignore_unknown")
        elif problem.get("type") == "model_attributes_type" or not where:
            messages.append("the body must be a JSON object such as {\"user\": 42, \"k\": 10}" + shown)
        else:
            messages.append(f"{where}: {problem.get('msg', 'invalid')}{shown}")
    more = f" and {len(problems) - 10} more problems" if len(problems) > 10 else ""
    return JSONResponse({"error": "; ".join(messages) + more, "field": field}, status_code=422)


def _version() -> str:
    from seqrec import __version__

    return __version__
