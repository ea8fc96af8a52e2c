"""SSE event ids, sans-IO: ``<stream>_<seq>``, and a stream's kind from its first letter.

A resume must tell a standalone (GET) stream from a request's stream even
after a restart or on another instance, so the kind is part of the id: one
place makes ids, one parses them.
"""

from __future__ import annotations

from typing import Final

__all__ = ["event_id", "is_standalone", "parse_event_id", "stream_id"]

_STANDALONE: Final = "g"
_REQUEST: Final = "r"
#: Sequence numbers up to 18 digits: an int64, whatever a store keeps.
_MAX_SEQ_DIGITS: Final = 18


def stream_id(*, standalone: bool, unique: str) -> str:
    """A stream's id: its kind, then *unique* (any text; the last ``_`` of an event id ends it)."""
    return f"{_STANDALONE if standalone else _REQUEST}{unique}"


def is_standalone(stream: str) -> bool:
    """Whether *stream* names a session's standalone (GET) stream."""
    return stream.startswith(_STANDALONE)


def event_id(stream: str, seq: int) -> str:
    return f"{stream}_{seq}"


def parse_event_id(value: str) -> tuple[str, int] | None:
    """Split ``"<stream>_<seq>"``; ``None`` for anything else (the caller answers)."""
    stream, sep, seq = value.rpartition("_")
    # ASCII digits only: str.isdigit() admits "¹²", which int() refuses.
    if not sep or not stream or not (seq.isascii() and seq.isdigit()):
        return None
    if len(seq) > _MAX_SEQ_DIGITS:
        return None
    return stream, int(seq)
