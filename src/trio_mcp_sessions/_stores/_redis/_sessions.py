"""The Redis session store: one hash per session, changed a field at a time."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, final

import trio

from ..._errors import StoreUnavailable
from .._base import SessionRecord
from ._client import _check_prefix, _map_backend_errors, _require_bytes_client
from ._scripts import (
    _ACTIVITY,
    _LEVEL,
    _RECORD,
    _SUBSCRIPTION,
    _TOUCH_LUA,
    _UPDATE_STATE_LUA,
    _milliseconds,
    _session_key,
    _text,
    _uri_bytes,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import coredis

__all__ = ["RedisSessionStore"]


@final
class RedisSessionStore:
    """Session records in Redis, so another instance or a restart can restore them.

    Each record is a hash: ``r``, the record's JSON
    (:meth:`SessionRecord.to_json`), ``a``, its ``last_activity``, ``l``, its
    log level, and one ``s:<uri>`` field per subscription. A touch rewrites
    only ``a`` and the TTL, and :meth:`update_state` only ``l`` and the
    subscriptions that changed, each atomically and only if the record still
    exists (Lua scripts), so they never rewrite or resurrect the JSON;
    :meth:`load` returns the record with those fields applied.
    TTLs are set in milliseconds (rounded up); an infinite TTL (no idle
    timeout) becomes about 35 years.

    Args:
        client: An open ``coredis.Redis`` with ``decode_responses=False``.
        prefix: Namespace of every key.

    Raises:
        ValueError: For an empty prefix or a client that decodes responses.
    """

    def __init__(self, client: coredis.Redis[bytes], *, prefix: str = "mcp") -> None:
        _check_prefix(prefix)
        _require_bytes_client(client)
        self.prefix = prefix
        self._client = client
        self._touch = client.register_script(_TOUCH_LUA)
        self._update_state = client.register_script(_UPDATE_STATE_LUA)

    def key(self, session_id: str) -> str:
        """The Redis key of one session's record."""
        return _session_key(self.prefix, session_id)

    async def save(self, record: SessionRecord, *, ttl: float) -> None:
        """Create or replace the record; it expires after *ttl* seconds (one ``MULTI``).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        key = self.key(record.session_id)
        fields: dict[bytes, bytes | str] = {
            _RECORD: record.to_json(),
            _ACTIVITY: repr(float(record.last_activity)),
            _LEVEL: record.log_level or "",
        }
        for uri in record.subscriptions:
            fields[_SUBSCRIPTION + _uri_bytes(uri)] = b"1"
        with _map_backend_errors("saving a session"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete([key])  # a replaced record keeps none of the old state
                pipe.hset(key, fields)
                pipe.pexpire(key, _milliseconds(ttl))

    async def load(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None`` when unknown or expired.

        Raises:
            StoreUnavailable: Redis failed, or holds something that is not a record.
        """
        await trio.lowlevel.checkpoint()
        with _map_backend_errors("loading a session"):
            fields = await self._client.hgetall(self.key(session_id))
        raw = fields.get(_RECORD)
        if raw is None:
            return None
        try:
            record = SessionRecord.from_json(raw)
            activity = fields.get(_ACTIVITY)
            if activity is not None:
                record = replace(record, last_activity=float(activity))
            level = fields.get(_LEVEL)
            if level is not None:  # written by update_state or a save of this version
                uris = sorted(
                    bytes(name[len(_SUBSCRIPTION) :]).decode("utf-8", "surrogatepass")
                    for name in fields
                    if bytes(name).startswith(_SUBSCRIPTION)
                )
                record = replace(
                    record,
                    log_level=_text(level) or None,
                    subscriptions=tuple(uris),
                )
        except ValueError as exc:
            raise StoreUnavailable(f"redis: unreadable session record: {exc}") from exc
        return record

    async def touch(self, session_id: str, *, ttl: float, last_activity: float) -> None:
        """Push the expiry to *ttl* seconds from now and record *last_activity*.

        A no-op for an unknown or expired id.

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _map_backend_errors("touching a session"):
            await self._touch(
                keys=[self.key(session_id)],
                args=[_milliseconds(ttl), repr(float(last_activity))],
            )

    async def update_state(
        self,
        session_id: str,
        *,
        log_level: str | None,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
    ) -> None:
        """Set the log level and add and remove subscriptions: a field each, not the record.

        A no-op for an unknown or expired id (one atomic script).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        args: list[bytes | str | int] = [log_level or "", len(subscribe)]
        args += [_uri_bytes(uri) for uri in subscribe]
        args += [_uri_bytes(uri) for uri in unsubscribe]
        with _map_backend_errors("updating a session's state"):
            await self._update_state(keys=[self.key(session_id)], args=args)

    async def delete(self, session_id: str) -> None:
        """Remove the record (idempotent).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _map_backend_errors("deleting a session"):
            await self._client.delete([self.key(session_id)])

    async def ttl(self, session_id: str) -> float:
        """Seconds until the record expires: 0 when it does not exist.

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _map_backend_errors("reading a session's TTL"):
            remaining = await self._client.pttl(self.key(session_id))
        if remaining == -2:
            return 0.0
        if remaining == -1:
            return math.inf
        return remaining / 1000
