"""What one 2026-07-28 ``tools/call`` costs in the ASGI app alone: no sockets, no Hypercorn.

Calls the app of ``bench/servers/ours.py`` directly with a modern POST (the
request ``bench/loadgen.py``'s stateless workload sends) and a ``send`` that
only keeps the messages, in one trio run, and prints the process CPU per
request (median and minimum of the rounds) with trio's task steps and
scheduling rounds per request. Also, for comparison, the same with:

- ``raw``: the raw ceiling app (``bench/servers/raw_asgi.py``);
- ``transport``: ours with the sessionless service replaced by one that hands
  back a finished reply at once (our HTTP checks, the ladder and the answer,
  without running a handler; JSON only).

``--auth`` puts ours behind a resource server: ``table`` (a verifier that
answers at once: the gate's own cost) or ``jwt`` (our ``JwtVerifier`` with an
RS256 token, its key set served once by a loopback Hypercorn, then cached:
what a real deployment pays per call).

    .venv/bin/python bench/stateless_cost.py --requests 3000 --rounds 7
    .venv/bin/python bench/stateless_cost.py --app ours --reply json --auth none table jwt
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

BENCH = Path(__file__).resolve().parent


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Steps(trio.abc.Instrument):
    """Task steps and scheduling rounds (one I/O wait each)."""

    def __init__(self) -> None:
        self.steps = 0
        self.rounds = 0

    def after_io_wait(self, timeout: float) -> None:
        self.rounds += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


def modern_request(request_id: int, sse: bool) -> tuple[dict[str, Any], bytes]:
    """An ASGI scope and body: what loadgen.stateless_calls puts on the wire."""
    tool = "progress_echo" if sse else "echo"
    meta: dict[str, Any] = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    if sse:
        meta["progressToken"] = request_id
    message = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": {"text": "hello"}, "_meta": meta},
    }
    body = json.dumps(message, separators=(",", ":")).encode()
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"application/json, text/event-stream"),
        (b"content-type", b"application/json"),
        (b"mcp-protocol-version", b"2026-07-28"),
        (b"mcp-method", b"tools/call"),
        (b"mcp-name", tool.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "http_version": "1.1",
        "scheme": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    return scope, body


def _stub_service(app: Any) -> None:
    """Replace the sessionless service's handler run by a reply that is ready at once."""
    from trio_mcp_sessions._protocol._jsonrpc import Response, encode
    from trio_mcp_sessions._stateless._service import Exchange
    from trio_mcp_sessions._streams import EventStream, SseEvent

    def open_request(request: Any, info: Any, *, notifications: bool) -> Exchange:
        stream = EventStream("m")
        result = {"resultType": "complete", "content": [{"type": "text", "text": "hello"}]}
        stream.put(SseEvent(None, encode(Response(request.message.id, result))))
        stream.end()
        return Exchange(stream)

    app.sessionless.open_request = open_request


RESOURCE = "http://127.0.0.1:8000/mcp"


async def _resource_server(kind: str, nursery: trio.Nursery) -> tuple[Any, bytes]:
    """``(ResourceServer, Authorization header)`` for ``--auth`` *kind*."""
    from trio_mcp_sessions import JwtVerifier, ResourceServer, VerifiedToken

    if kind == "table":
        token = VerifiedToken("https://as.bench", "alice", "bench", frozenset({"mcp"}))

        class Fixed:
            async def verify(self, bearer: str) -> VerifiedToken:
                await trio.lowlevel.checkpoint()
                return token

        return ResourceServer(RESOURCE, ["https://as.bench"], Fixed(), scopes={"mcp"}), (
            b"Bearer bench"
        )
    from functools import partial

    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve
    from joserfc import jwt
    from joserfc.jwk import KeySet, RSAKey

    key = RSAKey.generate_key(2048, {"kid": "bench-1"})
    jwks = json.dumps(KeySet([key]).as_dict(private=False)).encode()

    async def keys(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]  # startup, shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": jwks})

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds = await nursery.start(
        partial(hypercorn_serve, keys, config, shutdown_trigger=trio.sleep_forever)  # type: ignore[arg-type]
    )
    issuer = binds[0]
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": "alice",
        "aud": RESOURCE,
        "client_id": "bench",
        "scope": "mcp",
        "iat": now,
        "exp": now + 3600,
    }
    header = {"alg": "RS256", "kid": "bench-1", "typ": "at+jwt"}
    bearer = jwt.encode(header, claims, key, algorithms=["RS256"])
    verifier = JwtVerifier(issuer, RESOURCE, jwks_uri=f"{issuer}/jwks")
    config_ = ResourceServer(RESOURCE, [issuer], verifier, scopes={"mcp"})
    return config_, f"Bearer {bearer}".encode()


async def measure(args: argparse.Namespace) -> str:

    async with trio.open_nursery() as outer:
        result = await _measure(args, outer)
        outer.cancel_scope.cancel()
    return result


async def _measure(args: argparse.Namespace, outer: trio.Nursery) -> str:
    from trio_mcp_sessions import StreamableHTTPApp

    auth, authorization = (None, b"")
    if args.auth != "none":
        auth, authorization = await _resource_server(args.auth, outer)
    ours = StreamableHTTPApp(_load(BENCH / "servers" / "ours.py").server, auth=auth)
    if args.app == "transport":
        _stub_service(ours)
    app = _load(BENCH / "servers" / "raw_asgi.py").app if args.app == "raw" else ours
    sse = args.reply == "sse"
    steps = Steps()
    per_request: list[float] = []
    content_type = b""
    async with trio.open_nursery() as nursery:
        await nursery.start(ours.run)
        for index in range(args.rounds + 1):  # the first round warms up
            requests = [modern_request(i, sse) for i in range(args.requests)]
            if authorization:
                for scope, _ in requests:
                    scope["headers"].append((b"authorization", authorization))
            starts: list[Any] = []

            async def send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    starts.append(message)  # noqa: B023 (each round's own list)

            gc.collect()
            gc.disable()
            trio.lowlevel.add_instrument(steps)
            steps.steps = steps.rounds = 0
            cpu = time.process_time()
            for scope, body in requests:
                messages = [{"type": "http.request", "body": body, "more_body": False}]

                async def receive(messages: list[Any] = messages) -> Any:
                    if messages:
                        return messages.pop()
                    await trio.sleep_forever()

                await app(scope, receive, send)
            cpu = time.process_time() - cpu
            trio.lowlevel.remove_instrument(steps)
            gc.enable()
            if len(starts) != args.requests or any(m["status"] != 200 for m in starts):
                raise RuntimeError(f"unexpected answers: {starts[:1]}")
            content_type = dict(starts[0]["headers"])[b"content-type"]
            if index:
                per_request.append(cpu / args.requests * 1e6)
        nursery.cancel_scope.cancel()
    auth = f" auth={args.auth}" if args.auth != "none" else ""
    return (
        f"{args.app}{auth} {args.reply}: {statistics.median(per_request):.1f} µs CPU per request "
        f"(min {min(per_request):.1f}), {steps.steps / args.requests:.1f} task steps, "
        f"{steps.rounds / args.requests:.1f} scheduling rounds, {content_type.decode()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=("ours", "transport", "raw"), nargs="+", default=None)
    parser.add_argument("--reply", choices=("json", "sse"), nargs="+", default=["json", "sse"])
    parser.add_argument("--requests", type=int, default=3000, help="per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--auth",
        choices=("none", "table", "jwt"),
        nargs="+",
        default=["none"],
        help="ours behind a resource server (needs the auth extra for jwt)",
    )
    args = parser.parse_args()
    for app in args.app or ["raw", "transport", "ours"]:
        for reply in args.reply:
            if app == "transport" and reply == "sse":
                continue  # the stub answers at once: no notification, no SSE
            for auth in args.auth if app != "raw" else ["none"]:
                one = argparse.Namespace(**{**vars(args), "app": app, "reply": reply, "auth": auth})
                print(trio.run(measure, one), flush=True)


if __name__ == "__main__":
    main()
