"""2026-07-28 requests: no session, one request at a time, each in its own cancel scope.

The sessionless counterpart of :mod:`._session`, at the same layer: it runs
the server API's handlers for requests that carry their version and the
client's capabilities in ``_meta``, and turns their questions for the client
into input-required rounds.
"""

from ._peer import StatelessPeer
from ._service import SessionlessService, SessionlessStatistics

__all__ = ["SessionlessService", "SessionlessStatistics", "StatelessPeer"]
