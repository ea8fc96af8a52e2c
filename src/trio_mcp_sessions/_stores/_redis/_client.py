"""What every Redis class does with its client: open it, check it, map its errors.

coredis is imported lazily (it is optional), and no coredis exception leaves
this package: :func:`_map_backend_errors` turns each into
:class:`~trio_mcp_sessions.StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import trio

from ..._errors import StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

    import coredis

__all__ = ["open_redis"]


def _backend_errors() -> tuple[type[BaseException], ...]:
    """What a failing backend raises; imported lazily, coredis is optional."""
    import anyio
    from coredis.exceptions import RedisError

    return (
        RedisError,
        OSError,  # includes TimeoutError (coredis' stream and connect timeouts)
        anyio.BrokenResourceError,
        anyio.ClosedResourceError,
        anyio.EndOfStream,
    )


@contextlib.contextmanager
def _map_backend_errors(what: str) -> Iterator[None]:
    """Turn any backend failure inside the block into :class:`StoreUnavailable`."""
    try:
        yield
    except _backend_errors() as exc:
        raise StoreUnavailable(f"redis: {what} failed: {exc!r}") from exc


def _require_bytes_client(client: Any) -> None:
    if getattr(client, "decode_responses", False):
        raise ValueError("the Redis client must be created with decode_responses=False")


def _check_prefix(prefix: str) -> None:
    if not prefix:
        raise ValueError("prefix must not be empty")


async def open_redis(
    url: str,
    nursery: trio.Nursery,
    *,
    connect_timeout: float = 1.0,
    stream_timeout: float = 1.0,
) -> coredis.Redis[bytes]:
    """Open a coredis client for *url* that lives as long as *nursery*.

    The client gets the settings the package docstring recommends: short
    connect and read timeouts, and a retry policy that retries a lost
    connection once but never a timeout, so a dead or frozen Redis fails a call
    in about a second and a restarted one is picked up again without a restart
    of ours.
    """
    import coredis
    from coredis.retry import ConstantRetryPolicy

    async def run(*, task_status: trio.TaskStatus[coredis.Redis[bytes]]) -> None:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url,
            decode_responses=False,
            connect_timeout=connect_timeout,
            stream_timeout=stream_timeout,
            retry_policy=ConstantRetryPolicy(
                (coredis.exceptions.ConnectionError,), retries=1, delay=0.05
            ),
        )
        async with client:
            task_status.started(client)
            await trio.sleep_forever()

    client: coredis.Redis[bytes] = await nursery.start(run)
    return client
