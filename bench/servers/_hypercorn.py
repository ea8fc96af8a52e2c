"""Serve an ASGI app on Hypercorn's trio worker in this process until SIGTERM/SIGINT.

The benchmark runner measures the PID it started, so the serving process must
be that PID: ``hypercorn -w 1`` forks a child, ``-w 0`` has no signal handling
on the trio worker. This calls ``hypercorn.trio.serve`` in-process with a
shutdown trigger on SIGTERM/SIGINT, access log off, and prints
``READY http://127.0.0.1:PORT`` once bound (port 0 picks a free port).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


def run(app: Any, description: str) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bind", default="127.0.0.1:0", help="loopback host:port (default port 0)")
    args = parser.parse_args()
    if not args.bind.startswith("127."):
        raise SystemExit("the benchmark servers bind to loopback only")
    # Python's default: WARNING and above, so no per-request INFO logging
    # on any server (ours is started with --log-level warning to match).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = Config()
    config.bind = [args.bind]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                partial(serve, app, config, shutdown_trigger=_wait_for_signal)
            )
            print(f"READY {urls[0]}", flush=True)

    trio.run(main)
    print("STOPPED", flush=True)
