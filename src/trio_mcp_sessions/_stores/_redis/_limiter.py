"""The Redis rate limiter: creation windows and call budgets shared by every instance."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import trio

from ..._errors import StoreUnavailable
from ._client import _check_prefix, _map_backend_errors, _require_bytes_client
from ._scripts import (
    _SPEND_LUA,
    _call_window_key,
    _client_window_key,
    _global_window_key,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import coredis

    from ..._ratelimit import RateLimit

__all__ = ["RedisRateLimiter"]


@dataclass(frozen=True, slots=True)
class _CreationStamps:
    """The stamps one recorded creation left, a (window key, member) each.

    :meth:`RedisRateLimiter.acquire` hands them out as its receipt, and
    :meth:`RedisRateLimiter.refund` removes them.
    """

    entries: tuple[tuple[str, str], ...]


@final
class RedisRateLimiter:
    """A session-creation rate limiter shared by every instance using one Redis.

    The same sliding windows as :class:`~trio_mcp_sessions.SlidingWindowLimiter`
    (a global one, and one per client key), kept in sorted sets and checked
    and updated by one atomic Lua script timed by Redis' own clock, so the
    budget holds across instances whatever their clocks say. A creation is
    recorded in every window or in none. Keys expire one window after their
    newest creation, so one-off client keys cost nothing for long.

    It also keeps the budgets of 2026-07-28 requests (:meth:`spend`, for
    :class:`CallLimits`) in windows of their own keys, so giving one limiter
    to :class:`StreamableHTTPApp` shares both.

    Args:
        client: An open ``coredis.Redis`` with ``decode_responses=False``.
        global_limit: Creations shared by every client of every instance, or
            ``None``.
        per_client: Creations per client key, or ``None``.
        prefix: Namespace of every key.

    Raises:
        ValueError: For an empty prefix or a client that decodes responses.
    """

    def __init__(
        self,
        client: coredis.Redis[bytes],
        *,
        global_limit: RateLimit | None = None,
        per_client: RateLimit | None = None,
        prefix: str = "mcp",
    ) -> None:
        _check_prefix(prefix)
        _require_bytes_client(client)
        self.global_limit = global_limit
        self.per_client = per_client
        self.prefix = prefix
        self._client = client
        self._spend = client.register_script(_SPEND_LUA)

    @property
    def enabled(self) -> bool:
        return self.global_limit is not None or self.per_client is not None

    def global_key(self) -> str:
        return _global_window_key(self.prefix)

    def client_key(self, key: str) -> str:
        return _client_window_key(self.prefix, key)

    def call_window_key(self, kind: str, name: str, client: str | None) -> str:
        return _call_window_key(self.prefix, kind, name, client)

    async def spend(
        self, windows: Sequence[tuple[str, str, str | None, RateLimit]]
    ) -> tuple[float, int]:
        """Record one 2026-07-28 request in every window or in none (one atomic script).

        Each window is ``(kind, name, client key or None, limit)``; its key
        is under ``{prefix}:rl:call:`` (never a creation window's) and
        expires one window after its newest request.

        Returns:
            ``(0, -1)`` when recorded, else ``(retry_after, index)`` of the
            window that frees last.

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        if not windows:
            return 0.0, -1
        member = secrets.token_hex(8)
        args: list[str | int] = [member]
        for *_, limit in windows:
            args += [limit.max_creations, max(1, round(limit.window * 1_000_000))]
        keys = [self.call_window_key(kind, name, client) for kind, name, client, _ in windows]
        with _map_backend_errors("spending a call budget"):
            reply: object = await self._spend(keys=keys, args=args)
        match reply:
            case [int(wait), int(index)] if wait <= 0:
                return 0.0, -1
            case [int(wait), int(index)] if 1 <= index <= len(windows):
                return wait / 1_000_000, index - 1
        raise StoreUnavailable(f"redis: unexpected call budget reply {reply!r}")

    async def acquire(self, key: str | None) -> tuple[float, object]:
        """Try to spend one creation for client *key* (``None``: global window only).

        Returns:
            ``(retry_after, receipt)``: ``retry_after`` is 0 when allowed (the
            creation is recorded; pass *receipt* to :meth:`refund` to give it
            back), else the seconds until the tightest window frees a slot,
            and ``None`` (nothing was recorded).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        windows: list[tuple[str, RateLimit]] = []
        if self.global_limit is not None:
            windows.append((self.global_key(), self.global_limit))
        if self.per_client is not None and key is not None:
            windows.append((self.client_key(key), self.per_client))
        if not windows:
            return 0.0, _CreationStamps(())
        member = secrets.token_hex(8)
        args: list[str | int] = [member]
        for _, limit in windows:
            args += [limit.max_creations, max(1, round(limit.window * 1_000_000))]
        with _map_backend_errors("acquiring a creation"):
            reply: object = await self._spend(keys=[k for k, _ in windows], args=args)
        if not (isinstance(reply, list) and len(reply) == 2 and isinstance(reply[0], int)):
            raise StoreUnavailable(f"redis: unexpected rate limit reply {reply!r}")
        wait = reply[0]
        if wait > 0:
            return wait / 1_000_000, None
        return 0.0, _CreationStamps(tuple((k, member) for k, _ in windows))

    async def refund(self, receipt: object) -> None:
        """Give back a creation recorded by :meth:`acquire` (its ``initialize`` failed).

        ``None`` (a refused acquire's receipt) refunds nothing; refunding
        twice, or after the window passed, is harmless.

        Raises:
            TypeError: *receipt* did not come from :meth:`acquire`.
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        if receipt is None:
            return
        if not isinstance(receipt, _CreationStamps):
            raise TypeError(f"not a RedisRateLimiter receipt: {receipt!r}")
        if not receipt.entries:
            return
        with _map_backend_errors("refunding a creation"):
            async with self._client.pipeline(transaction=False) as pipe:
                for zset, member in receipt.entries:
                    pipe.zrem(zset, [member])
