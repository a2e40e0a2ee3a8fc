"""The HTTP service: top-k recommendations from a trained run over JSON (FastAPI on uvicorn).

    seqrec serve runs/ml1m --port 8000
    curl -s localhost:8000/recommend -H 'content-type: application/json' -d '{"user": 42, "k": 10}'

Endpoints: `POST /recommend` (a known `user` or a raw item `history`, with its `times` / `ratings` for a model
that reads them; `k`, `exclude_seen`, `allow`, `deny`, `ignore_unknown`), `GET /health`, `GET /model` (model,
data fingerprint, metrics of the best epoch), and the OpenAPI description at `/openapi.json` with interactive
docs at `/docs`.

The package: `app` (the FastAPI app, models and error handlers), `batching` (the queue and scoring pool),
`guards` (body limit, API key, exposure check); `serve` here runs it under uvicorn.

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

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from seqrec.serve.app import (
    ErrorResponse,
    RecommendRequest,
    RecommendResponse,
    ScoredItem,
    ServeSettings,
    create_app,
)
from seqrec.serve.batching import Batcher
from seqrec.serve.guards import (
    API_KEY_ENV,
    MIN_KEY_LENGTH,
    OPEN_PATHS,
    BodyLimit,
    TokenAuth,
    check_exposure,
    is_loopback,
    resolve_api_key,
)

if TYPE_CHECKING:
    from seqrec.recommend import Recommender

__all__ = ["API_KEY_ENV", "MIN_KEY_LENGTH", "OPEN_PATHS", "Batcher", "BodyLimit", "ErrorResponse", "RecommendRequest",
           "RecommendResponse", "ScoredItem", "ServeSettings", "TokenAuth", "check_exposure", "create_app",
           "is_loopback", "resolve_api_key", "serve"]


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
    from seqrec.recommend import Recommender

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
