"""What guards the service before a request reaches the app: a body-size limit and an API key (ASGI middleware),
where the key comes from, and the refusal to serve a non-loopback interface without one.

With a key, every endpoint but `/health` needs `Authorization: Bearer KEY` (or `X-API-Key: KEY`); the key is
compared in constant time and never logged or echoed; a missing or wrong key gets 401. Refusals are JSON
`{"error", "field"}` like every other 4xx of the service.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seqrec.errors import ConfigError


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
