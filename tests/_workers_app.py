"""The app ``hypercorn -k trio -w N`` serves in test_multi_instance (imported in each worker).

``MCP_TEST_REDIS`` (a URL) puts sessions and events in Redis, under the
prefix ``MCP_TEST_PREFIX``; without it every store is in memory. The
``worker`` tool answers with the PID of the worker that ran it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from trio_mcp_sessions import (
    LifespanApp,
    McpServer,
    RedisEventStore,
    RedisSessionStore,
    StreamableHTTPApp,
    open_redis,
)

if TYPE_CHECKING:
    import trio

server = McpServer("workers")


@server.tool()
def worker() -> str:
    """The PID of the worker process that ran this call."""
    return str(os.getpid())


async def build(nursery: trio.Nursery) -> StreamableHTTPApp:
    url = os.environ.get("MCP_TEST_REDIS")
    if not url:
        return StreamableHTTPApp(server)
    redis = await open_redis(url, nursery)
    prefix = os.environ["MCP_TEST_PREFIX"]
    return StreamableHTTPApp(
        server,
        session_store=RedisSessionStore(redis, prefix=prefix),
        event_store=RedisEventStore(redis, prefix=prefix),
    )


app = LifespanApp(build)
