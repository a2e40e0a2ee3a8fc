"""The HTTP service: top-k recommendations from a trained run over JSON (FastAPI on uvicorn).

    seqrec serve runs/ml1m --port 8000
    curl -s localhost:8000/recommend -H 'content-type: application/json' -d '{"user": 42, "k": 10}'

Endpoints: `POST /recommend` (a known `user` or a raw item `history`, with its `times` / `ratings` for a model
that reads them; `k`, `exclude_seen`, `allow`, `deny`, `ignore_unknown`), `GET /health`, `GET /model` (model,
data fingerprint, metrics of the best epoch), and the OpenAPI description at `/openapi.json` with interactive
docs at `/docs`.

The model is loaded once. Requests are validated on the event loop, then queued; a worker takes everything
waiting (up to `max_batch`) and answers it with one batched forward pass and one top-k in a bounded thread
pool, so concurrent requests share the model's matrix products instead of competing for the cores.

Access (`api_key`): with a key, every endpoint but `/health` needs `Authorization: Bearer KEY` (or `X-API-Key:
KEY`); the key is compared in constant time and never logged or echoed; a missing or wrong key gets 401. Without
a key the service answers anyone who reaches it, so `seqrec serve` refuses a non-loopback host without one unless
told `--no-auth` (`resolve_api_key`, `check_exposure`).

Every bad request gets a JSON body `{"error": message, "field": name or null}` and a 4xx status, never a
500: 400 malformed JSON, 404 unknown user or path, 405 wrong method, 413 body over the size limit, 422 no
JSON body, 422 wrong types, unknown item ids (named), empty history, k or a list out of range. A history longer
than the model's `max_len` is cut to its most recent items, and the response says so (`truncated`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seqrec.errors import ConfigError
from seqrec.recommend import Query, Recommendation, Recommender, RecommendError

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
                                                            "for a model that reads them: HSTU with time_bias)")
    ratings: list[StrictInt | StrictFloat] | None = Field(
        None, description="ratings of the history's items, one each (only for a model that reads them: HSTU with "
                          "inputs items_ratings or interleaved)")
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


class Batcher:
    """Queue of validated queries answered in batches by a bounded pool of scoring threads."""

    def __init__(self, recommender: Recommender, max_batch: int, threads: int) -> None:
        self.recommender = recommender
        self.max_batch = max(1, int(max_batch))
        self.threads = max(1, int(threads))
        self.pool: ThreadPoolExecutor | None = None
        self.queue: asyncio.Queue[tuple[Query, asyncio.Future[Recommendation]]] = asyncio.Queue()
        self.workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:  # a new queue: each start may run on another event loop
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="seqrec-score")
        self.queue = asyncio.Queue()
        self.workers = [asyncio.create_task(self._work()) for _ in range(self.threads)]

    async def stop(self) -> None:
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    async def submit(self, query: Query) -> Recommendation:
        future: asyncio.Future[Recommendation] = asyncio.get_running_loop().create_future()
        await self.queue.put((query, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                answers = await loop.run_in_executor(self.pool, self.recommender.recommend_many,
                                                     [query for query, _ in batch])
            except Exception as error:  # noqa: BLE001 - handed to every waiting request
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for (_, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)


class BodyLimit:
    """ASGI middleware refusing request bodies over `limit` bytes (by Content-Length, or while streaming)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    shown = value.decode(errors="replace")
                    return await _send_json(send, 400, {"error": f"bad Content-Length {shown!r}", "field": None})
                if int(value) > self.limit:
                    return await _send_json(send, 413, _too_large(int(value), self.limit))
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, _too_large(received, self.limit)["error"])
            return message

        return await self.app(scope, limited, send)


def _too_large(size: int, limit: int) -> dict:
    return {"error": f"request body of {size} bytes is over the limit of {limit} bytes", "field": None}


async def _send_json(send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    import json

    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *(headers or ())]})
    await send({"type": "http.response.body", "body": payload})


API_KEY_ENV = "SEQREC_API_KEY"
MIN_KEY_LENGTH = 16
OPEN_PATHS = frozenset({"/health"})


class TokenAuth:
    """ASGI middleware: every request but those to `OPEN_PATHS` must carry the key, as `Authorization: Bearer
    KEY` or `X-API-Key: KEY`; else 401 JSON. Digests of equal length are compared with `hmac.compare_digest`, so
    the time taken says nothing about the key (not even its length); nothing of what was sent is echoed."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self._digest = hashlib.sha256(key.encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = token.strip()
            elif name == b"x-api-key":
                given = value.strip()
        if given is None:
            return await _send_json(send, 401, {"error": "this service needs an API key: send the header "
                                                         "'Authorization: Bearer KEY' (or 'X-API-Key: KEY')",
                                                "field": None}, [(b"www-authenticate", b"Bearer")])
        if not hmac.compare_digest(hashlib.sha256(given).digest(), self._digest):
            return await _send_json(send, 401, {"error": "invalid API key", "field": None},
                                    [(b"www-authenticate", b'Bearer error="invalid_token"')])
        return await self.app(scope, receive, send)


def resolve_api_key(key_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
                    ) -> tuple[str | None, str | None]:
    """(the key, where it came from) from `key_file` (its first line, surrounding blanks dropped) or else
    `$SEQREC_API_KEY`; (None, None) when neither is given.

    Raises:
        ConfigError: the file cannot be read, or the key is empty, shorter than 16 characters or not plain
            printable ASCII (it travels in an HTTP header).
    """
    environ = os.environ if environ is None else environ
    if key_file is not None:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"--api-key-file {key_file}: cannot read the key ({type(error).__name__}: "
                              f"{getattr(error, 'strerror', None) or 'not UTF-8 text'})") from None
        key, source = (text.strip().splitlines() or [""])[0].strip(), f"--api-key-file {key_file}"
    elif environ.get(API_KEY_ENV):
        key, source = environ[API_KEY_ENV].strip(), f"${API_KEY_ENV}"
    else:
        return None, None
    if len(key) < MIN_KEY_LENGTH or not key.isascii() or not key.isprintable() or " " in key:
        raise ConfigError(f"the API key from {source} must be at least {MIN_KEY_LENGTH} printable ASCII characters "
                          "without spaces (make one with: python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))')")
    return key, source


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or 'localhost') only accepts connections from this machine."""
    if host.strip().lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False        # a host name: it may resolve to any interface


def check_exposure(host: str, has_key: bool, no_auth: bool) -> None:
    """Refuse to answer unauthenticated requests on a non-loopback interface unless `no_auth` says so."""
    if no_auth and has_key:
        raise ConfigError("--no-auth contradicts the API key given (--api-key-file or $SEQREC_API_KEY); drop one")
    if not has_key and not no_auth and not is_loopback(host):
        raise ConfigError(f"--host {host} exposes the service beyond this machine, and no API key is set: give "
                          f"one with --api-key-file PATH or ${API_KEY_ENV}, or pass --no-auth to serve without "
                          "one on purpose")


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


def serve(run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          torch_threads: int | None = None, access_log: bool = False, checkpoint: str = "best.pt",
          ann: bool = False, on_ready: Callable[[Recommender], None] | None = None, api_key: str | None = None,
          no_auth: bool = False, on_stop: Callable[[], None] | None = None) -> None:
    """Load the run once and serve it until interrupted (blocking); SIGTERM or Ctrl-C stop taking connections
    and answer the requests in flight (those whose headers have arrived), then `on_stop()` is called and the
    process ends by that signal (uvicorn's convention: exit status 128 + 15 for SIGTERM). `api_key`: needed by
    every endpoint but /health; a non-loopback `host` without one is refused unless `no_auth`."""
    import torch
    import uvicorn

    check_exposure(host, bool(api_key), no_auth)
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    recommender = Recommender.load(run_dir, checkpoint=checkpoint, ann=ann)
    app = create_app(recommender, settings, api_key=api_key, on_stop=on_stop)
    config = uvicorn.Config(app, host=host, port=int(port), log_level="warning", access_log=access_log,
                            lifespan="on")
    if access_log:       # uvicorn logs requests at INFO, under the "warning" level kept for everything else
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(recommender)
    server.run()
