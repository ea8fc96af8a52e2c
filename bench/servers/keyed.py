"""The benchmark server (bench/servers/ours.py) with its budgets keyed on a client header.

Every benchmark client is on 127.0.0.1, so a budget keyed on the peer
address (the default) would make the flood and the well-behaved clients one
client. Here the app's ``principal`` is the ``X-Bench-Client`` request header
(what an authenticating proxy or middleware would hand over in a real
deployment), and the call and session budgets are keyed on it (the peer
address when the header is absent).

Takes every flag of ``python -m trio_mcp_sessions serve`` (read by the
project's own parser, so a flag added there works here as it is), serves on
Hypercorn's trio worker in this process and prints ``Serving MCP on URL``::

    python bench/servers/keyed.py --bind 127.0.0.1:0 --log-level warning \\
        --call-rate-limit-per-client 100/1 [--max-inflight ...]

``--no-call-rate-limit`` drops the call rate limits (global and per client)
and the per-client in-flight cap whatever else the command line says: the
modern flood's reference of our own server without its per-client bounds.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import trio

from trio_mcp_sessions import RequestInfo, serve
from trio_mcp_sessions import _cli as cli

HERE = Path(__file__).resolve().parent
HEADER = b"x-bench-client"


def principal(scope: dict[str, Any]) -> str | None:
    """The client's name from its ``X-Bench-Client`` header (trusted: this is a benchmark)."""
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return bytes(value).decode("latin-1")
    return None


def client_key(info: RequestInfo) -> str | None:
    return info.principal or info.client_address


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    own.add_argument("--no-call-rate-limit", action="store_true")
    mine, rest = own.parse_known_args(argv)
    args = cli._parser().parse_args(["serve", f"{HERE / 'ours.py'}:server", *rest])
    binds = args.bind or ["127.0.0.1:0"]
    if not all(bind.startswith("127.") for bind in binds):
        raise SystemExit("the benchmark servers bind to loopback only")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    target = cli.load_target(args.target)
    options = cli.options_from(args)
    calls = replace(options.call_limits, rate_limit_key=client_key)
    if mine.no_call_rate_limit:
        calls = replace(
            calls, rate_limit=None, rate_limit_per_client=None, max_inflight_per_client=None
        )
    options = replace(
        options, call_limits=calls, limits=replace(options.limits, rate_limit_key=client_key)
    )
    arguments: dict[str, Any] = {"listen_limits": cli.listen_limits_from(args)}
    if args.no_event_store:
        arguments["event_store"] = None
    if args.sqlite or args.redis or args.request_state_keys:
        raise SystemExit("keyed.py: stores and key files are not part of this benchmark")

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                partial(
                    serve,
                    target,
                    options=options,
                    bind=binds,
                    graceful_timeout=args.graceful_timeout,
                    principal=principal,
                    **arguments,
                )
            )
            if args.gc_freeze:  # as `python -m trio_mcp_sessions serve` does
                cli._freeze_startup_objects()
            for url in urls:
                print(f"Serving MCP on {url}{options.path}", flush=True)

    trio.run(run)  # until SIGTERM or SIGINT: serve() drains, then returns
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
