"""A small authorization server stand-in for the verifier tests, served by a real Hypercorn.

It serves RFC 8414 / OpenID Connect metadata, a JWKS and an RFC 7662
introspection endpoint on 127.0.0.1:0; its keys are real (joserfc) and so
are its tokens. Tests change what it answers (rotate keys, refuse, fail,
hold a response) and read what it was asked.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

if TYPE_CHECKING:
    from collections.abc import Callable

    from joserfc.jwk import Key

RESOURCE = "http://127.0.0.1/mcp"
RSA_KEY_SIZE = 2048


@dataclass
class Introspected:
    """What the introspection endpoint was asked (the token is the test's own)."""

    token: str
    authorization: str | None
    form: dict[str, str]


@dataclass
class AuthorizationServer:
    """The stand-in's state; ``issuer`` is set once Hypercorn is listening."""

    issuer: str = ""
    signing: list[Key] = field(default_factory=list)
    #: Path → status to answer instead of the document (e.g. 503, 404).
    fail: dict[str, int] = field(default_factory=dict)
    #: Path → raw body to answer instead of the document.
    raw: dict[str, bytes] = field(default_factory=dict)
    #: Changes to the metadata document (e.g. another ``issuer``).
    metadata_changes: dict[str, Any] = field(default_factory=dict)
    #: Path → an event the answer waits for (to hold concurrent requests together).
    hold: dict[str, trio.Event] = field(default_factory=dict)
    #: token → the introspection answer for it (unknown tokens are inactive).
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=lambda: {"rs": "s3cret/+:"})
    hits: Counter[str] = field(default_factory=Counter)
    introspected: list[Introspected] = field(default_factory=list)
    wall: Callable[[], float] = time.time
    #: Cancel it to take the server down (set by :func:`serve_authorization_server`).
    stop: trio.CancelScope = field(default_factory=trio.CancelScope)

    # -- keys and tokens -----------------------------------------------------------

    def add_key(self, kind: str = "RSA", kid: str | None = None) -> Key:
        key: Key
        kid = kid or f"{kind.lower()}-{len(self.signing) + 1}"
        if kind == "RSA":
            key = RSAKey.generate_key(RSA_KEY_SIZE, {"kid": kid})
        elif kind == "EC":
            key = ECKey.generate_key("P-256", {"kid": kid})
        else:
            key = OKPKey.generate_key("Ed25519", {"kid": kid})
        self.signing.append(key)
        return key

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = self.wall()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": RESOURCE,
            "client_id": "interop",
            "scope": "notes:read notes:write",
            "iat": int(now),
            "exp": int(now) + 300,
            "jti": "jti-1",
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        key: Key | None = None,
        *,
        alg: str | None = None,
        header: dict[str, Any] | None = None,
        **changes: Any,
    ) -> str:
        """A JWT signed by *key* (the first signing key by default)."""
        key = key or self.signing[0]
        alg = alg or {"RSA": "RS256", "EC": "ES256", "OKP": "Ed25519"}[key.key_type]
        head = {"alg": alg, "kid": key.kid, "typ": "at+jwt", **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(head, self.claims(**changes), key, algorithms=[alg], default_type=None)

    def jwks(self) -> dict[str, Any]:
        return dict(KeySet(list(self.signing)).as_dict(private=False))

    def metadata(self) -> dict[str, Any]:
        document = {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "introspection_endpoint": f"{self.issuer}/introspect",
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "response_types_supported": ["code"],
        }
        document.update(self.metadata_changes)
        return document

    # -- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        self.hits[path] += 1
        if path in self.hold:
            await self.hold[path].wait()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, document = self._answer(path, headers, body)
        if path in self.fail:
            status, document = self.fail[path], {"error": "server_error"}
        payload = self.raw.get(path, json.dumps(document).encode())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            return 200, self.metadata()
        if path == "/jwks":
            return 200, self.jwks()
        if path == "/introspect":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            authorization = headers.get("authorization")
            if not self._authenticated(authorization, form):
                return 401, {"error": "invalid_client"}
            token = form.get("token", "")
            self.introspected.append(Introspected(token, authorization, form))
            return 200, self.answers.get(token, {"active": False})
        return 404, {"error": "not_found"}

    def _authenticated(self, authorization: str | None, form: dict[str, str]) -> bool:
        if authorization is not None:
            scheme, _, encoded = authorization.partition(" ")
            if scheme.lower() != "basic":
                return False
            raw_id, _, raw_secret = base64.b64decode(encoded).decode().partition(":")
            client_id = urllib.parse.unquote(raw_id)
            secret = urllib.parse.unquote(raw_secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return self.clients.get(client_id) == secret


async def serve_authorization_server(
    nursery: trio.Nursery, server: AuthorizationServer
) -> trio.CancelScope:
    """Serve *server* on 127.0.0.1:0 (sets ``issuer``); cancel the scope to take it down."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.1
    scope = server.stop

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        with scope:
            await hypercorn_serve(
                server,  # type: ignore[arg-type]
                config,
                shutdown_trigger=trio.sleep_forever,
                task_status=task_status,
            )

    binds: list[str] = await nursery.start(partial(run))
    server.issuer = binds[0].rstrip("/")
    return scope


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (the port was just released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
