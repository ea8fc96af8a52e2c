"""One MCP session, split by job: worker and scope, outbound streams, inbound handling.

What ``_session`` exported as one module it still exports here.
"""

from .._interface import CloseReason, ReplyMode, RequestInfo
from .._streams import STREAM_BUFFER, STREAM_BUFFER_BYTES, EventStream, SseEvent
from ._outbound import parse_event_id
from ._session import Session, SessionEvents, SessionStatistics

__all__ = [
    "STREAM_BUFFER",
    "STREAM_BUFFER_BYTES",
    "CloseReason",
    "EventStream",
    "ReplyMode",
    "RequestInfo",
    "Session",
    "SessionEvents",
    "SessionStatistics",
    "SseEvent",
    "parse_event_id",
]
