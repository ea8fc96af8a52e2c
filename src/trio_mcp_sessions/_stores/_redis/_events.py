"""The Redis event store: one Redis Stream per (session, stream)."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import trio

from ..._errors import EventsPurged, StoreUnavailable
from .._base import StoredEvent
from ._client import _backend_errors, _check_prefix, _map_backend_errors, _require_bytes_client
from ._scripts import (
    _APPEND_LUA,
    _DATA,
    _DELETE_EVENTS_LUA,
    _SEQ_ERROR,
    _TOMBSTONE,
    _entry_id,
    _entry_seq,
    _index_key,
    _milliseconds,
    _stream_key,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import coredis

__all__ = ["RedisEventStore"]


@final
class RedisEventStore:
    """SSE events in Redis Streams, so any instance can resume any stream.

    One Redis Stream per (session, stream) holds the events as entries with
    id ``<seq>-0``. Because a session numbers each stream's events 1, 2, 3,
    ... without gaps, a replay whose first entry is not ``after_seq + 1``
    lost events to a bound, and raises :class:`EventsPurged`.

    Bounds (they differ from :class:`InMemoryEventStore`'s, which are per
    session):

    * ``max_events_per_session`` applies **per stream** (an exact
      ``XADD MAXLEN =``); a session holds at most that many events in each of
      its streams.
    * ``max_bytes_per_event`` applies **per event**: a larger event is not
      stored; a small tombstone takes its place, so a replay that would need
      it raises :class:`EventsPurged` instead of silently skipping it.
      ``append`` still succeeds (the event goes out live regardless).
    * ``max_age``: a stream expires this many seconds after its **last
      append** (the key's TTL, refreshed by each append); the events of a
      stream that is still being written are bounded by count, not age.

    Args:
        client: An open ``coredis.Redis`` with ``decode_responses=False``.
        prefix: Namespace of every key (the layout is in ``_redis/_scripts.py``).
        max_events_per_session: Events kept per stream; older ones are trimmed.
        max_bytes_per_event: Payloads larger than this are replaced by a tombstone.
        max_age: Seconds a stream is kept after its last append (``math.inf``:
            about 35 years).

    Raises:
        ValueError: For a bound that is not positive, an empty prefix, or a
            client that decodes responses.
    """

    def __init__(
        self,
        client: coredis.Redis[bytes],
        *,
        prefix: str = "mcp",
        max_events_per_session: int = 1000,
        max_bytes_per_event: int = 1 << 20,
        max_age: float = 300.0,
    ) -> None:
        _check_prefix(prefix)
        _require_bytes_client(client)
        if max_events_per_session < 1:
            raise ValueError("max_events_per_session must be at least 1")
        if max_bytes_per_event < 1:
            raise ValueError("max_bytes_per_event must be at least 1")
        if not max_age > 0:
            raise ValueError("max_age must be a positive number of seconds")
        self.prefix = prefix
        self.max_events_per_session = max_events_per_session
        self.max_bytes_per_event = max_bytes_per_event
        self.max_age = max_age
        self._client = client
        self._append = client.register_script(_APPEND_LUA)
        self._delete = client.register_script(_DELETE_EVENTS_LUA)

    def stream_key(self, session_id: str, stream_id: str) -> str:
        """The Redis key of one stream's events."""
        return _stream_key(self.prefix, session_id, stream_id)

    def index_key(self, session_id: str) -> str:
        """The Redis key listing a session's stream keys."""
        return _index_key(self.prefix, session_id)

    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        """Store one event (one round trip: an atomic script).

        Raises:
            ValueError: *seq* is below the stream's newest stored sequence number.
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        if seq < 1:
            raise ValueError(f"sequence numbers start at 1, got {seq}")
        stored = len(data) <= self.max_bytes_per_event
        try:
            await self._append(
                keys=[self.stream_key(session_id, stream_id), self.index_key(session_id)],
                args=[
                    seq,
                    _DATA if stored else _TOMBSTONE,
                    data if stored else b"",
                    self.max_events_per_session,
                    _milliseconds(self.max_age),
                ],
            )
        except _backend_errors() as exc:
            if _SEQ_ERROR in str(exc):
                raise ValueError(f"sequence numbers must grow: {exc}") from None
            raise StoreUnavailable(f"redis: storing an event failed: {exc!r}") from exc

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        """The stream's events strictly after *after_seq*, oldest first (one ``XRANGE``).

        Raises:
            EventsPurged: Events after *after_seq* were trimmed, expired, or
                too large to store.
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _map_backend_errors("replaying events"):
            entries = await self._client.xrange(
                self.stream_key(session_id, stream_id), _entry_id(max(after_seq, 0) + 1), "+"
            )
        # Entries after after_seq that exist are contiguous (trimming only drops
        # the oldest), so checking the first one finds any gap.
        if entries and (first := _entry_seq(entries[0].identifier)) != after_seq + 1:
            raise EventsPurged(
                f"events {after_seq + 1}..{first - 1} of stream {stream_id!r} are no longer stored"
            )
        events: list[StoredEvent] = []
        for entry in entries:
            seq = _entry_seq(entry.identifier)
            data = entry.field_values.get(_DATA)
            if data is None:
                raise EventsPurged(
                    f"event {seq} of stream {stream_id!r} was larger than "
                    f"{self.max_bytes_per_event} bytes and was not stored"
                )
            events.append(StoredEvent(seq, data if isinstance(data, bytes) else data.encode()))
        return events

    async def delete_session(self, session_id: str) -> None:
        """Delete every stream of the session and its index (one atomic script).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _map_backend_errors("deleting a session's events"):
            await self._delete(keys=[self.index_key(session_id)])
