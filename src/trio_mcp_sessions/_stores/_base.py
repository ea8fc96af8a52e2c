"""Store interfaces. Implementations know nothing of HTTP or of MCP methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["EventStore", "StoredEvent"]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One SSE event as stored: its position in its stream and its JSON payload."""

    seq: int
    data: bytes


@runtime_checkable
class EventStore(Protocol):
    """Where SSE events wait for a client that may reconnect with ``Last-Event-ID``.

    Every call is scoped by session *and* stream, so one session can never read
    another's events. The session assigns sequence numbers (1, 2, ... per
    stream); the store keeps them within its bounds.
    """

    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        """Store one event. Sequence numbers of a stream only grow."""
        ...

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        """The stream's events strictly after *after_seq*, oldest first.

        Returns an empty sequence for a stream the store has never seen.

        Raises:
            EventsPurged: Some events after *after_seq* were dropped by the
                store's bounds; a partial replay would lose messages silently.
        """
        ...

    async def delete_session(self, session_id: str) -> None:
        """Forget everything stored for a session (it closed for good)."""
        ...
