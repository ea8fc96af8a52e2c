"""trio-mcp-sessions: a trio-native MCP server with bounded Streamable HTTP sessions.

The public API lives here; everything in underscore modules is private.
"""

import contextlib as _contextlib

from ._auth import InvalidToken as InvalidToken
from ._auth import RunnableVerifier as RunnableVerifier
from ._auth import TokenVerifier as TokenVerifier
from ._auth import VerifiedToken as VerifiedToken
from ._auth import VerifierUnavailable as VerifierUnavailable
from ._auth._config import ResourceServer as ResourceServer
from ._errors import EventsPurged as EventsPurged
from ._errors import RateLimited as RateLimited
from ._errors import ServerBusy as ServerBusy
from ._errors import ServiceUnavailable as ServiceUnavailable
from ._errors import SessionError as SessionError
from ._errors import SessionNotFound as SessionNotFound
from ._errors import StoreUnavailable as StoreUnavailable
from ._errors import TooManyInFlight as TooManyInFlight
from ._errors import TooManySessions as TooManySessions
from ._errors import UnknownEventId as UnknownEventId
from ._handles import HandleBackend as HandleBackend
from ._handles import HandleCreated as HandleCreated
from ._handles import HandleError as HandleError
from ._handles import HandleLimitReached as HandleLimitReached
from ._handles import HandleLimits as HandleLimits
from ._handles import HandleNotFound as HandleNotFound
from ._handles import HandlePolicy as HandlePolicy
from ._handles import HandleStatistics as HandleStatistics
from ._handles import HandleStore as HandleStore
from ._handles import InMemoryHandleBackend as InMemoryHandleBackend
from ._handles import RedisHandleBackend as RedisHandleBackend
from ._handles import SqliteHandleBackend as SqliteHandleBackend
from ._interface import CloseReason as CloseReason
from ._interface import ReplyMode as ReplyMode
from ._interface import RequestInfo as RequestInfo
from ._interface import RestoreOutcome as RestoreOutcome
from ._interface import SessionInfo as SessionInfo
from ._interface import SessionManager as SessionManager
from ._manager import BoundedSessionManager as BoundedSessionManager
from ._manager import CallLimits as CallLimits
from ._manager import EvictionPolicy as EvictionPolicy
from ._manager import InflightStatistics as InflightStatistics
from ._manager import ManagerStatistics as ManagerStatistics
from ._manager import SessionLimits as SessionLimits
from ._manager._broadcast import ChangeRelay as ChangeRelay
from ._manager._budgets import Budget as Budget
from ._manager._budgets import CallBudgetStatistics as CallBudgetStatistics
from ._manager._budgets import SharedCallLimiter as SharedCallLimiter
from ._manager._limits import KeyedLimit as KeyedLimit
from ._options import ServerOptions as ServerOptions
from ._protocol._jsonrpc import ErrorResponse as ErrorResponse
from ._protocol._jsonrpc import InputLimits as InputLimits
from ._protocol._jsonrpc import Message as Message
from ._protocol._jsonrpc import Notification as Notification
from ._protocol._jsonrpc import ProtocolError as ProtocolError
from ._protocol._jsonrpc import Request as Request
from ._protocol._jsonrpc import RequestId as RequestId
from ._protocol._jsonrpc import Response as Response
from ._protocol._lifecycle import LATEST_PROTOCOL_VERSION as LATEST_PROTOCOL_VERSION
from ._protocol._lifecycle import SUPPORTED_PROTOCOL_VERSIONS as SUPPORTED_PROTOCOL_VERSIONS
from ._protocol._lifecycle import ClientInfo as ClientInfo
from ._protocol._request_state import InvalidRequestState as InvalidRequestState
from ._protocol._request_state import OpenedRequestState as OpenedRequestState
from ._protocol._request_state import RequestStateBinding as RequestStateBinding
from ._protocol._request_state import RequestStateCodec as RequestStateCodec
from ._protocol._request_state import RequestStateReason as RequestStateReason
from ._protocol._request_state import UsedStates as UsedStates
from ._protocol._request_state import UsedStatesStatistics as UsedStatesStatistics
from ._ratelimit import RateLimit as RateLimit
from ._ratelimit import SharedRateLimiter as SharedRateLimiter
from ._serve import serve as serve
from ._serve import wait_for_shutdown_signal as wait_for_shutdown_signal
from ._server._caching import CacheHint as CacheHint
from ._server._content import ToolResult as ToolResult
from ._server._content import audio_content as audio_content
from ._server._content import embedded_resource as embedded_resource
from ._server._content import image_content as image_content
from ._server._content import resource_link as resource_link
from ._server._content import text_content as text_content
from ._server._context import Context as Context
from ._server._context import InputRequest as InputRequest
from ._server._context import Peer as Peer
from ._server._errors import CapabilityNotSupported as CapabilityNotSupported
from ._server._errors import ClientRequestError as ClientRequestError
from ._server._errors import McpError as McpError
from ._server._errors import ToolError as ToolError
from ._server._schema import McpHeader as McpHeader
from ._server._server import McpServer as McpServer
from ._session import SessionStatistics as SessionStatistics
from ._stateless._listen import ListenLimits as ListenLimits
from ._stateless._listen import ListenPolicy as ListenPolicy
from ._stores._base import EventStore as EventStore
from ._stores._base import SessionRecord as SessionRecord
from ._stores._base import SessionStateUpdates as SessionStateUpdates
from ._stores._base import SessionStore as SessionStore
from ._stores._base import StoredEvent as StoredEvent
from ._stores._guard import StoreGuardStatistics as StoreGuardStatistics
from ._stores._memory import InMemoryEventStore as InMemoryEventStore
from ._stores._memory_sessions import InMemorySessionStore as InMemorySessionStore
from ._stores._redis import RedisBroadcast as RedisBroadcast
from ._stores._redis import RedisBroadcastStatistics as RedisBroadcastStatistics
from ._stores._redis import RedisEventStore as RedisEventStore
from ._stores._redis import RedisRateLimiter as RedisRateLimiter
from ._stores._redis import RedisSessionStore as RedisSessionStore
from ._stores._redis import open_redis as open_redis
from ._stores._sqlite import SqliteEventStore as SqliteEventStore
from ._stores._sqlite import SqliteSessionStore as SqliteSessionStore
from ._streams import EventStream as EventStream
from ._streams import SseEvent as SseEvent
from ._transport._asgi import AppArguments as AppArguments
from ._transport._asgi import StreamableHTTPApp as StreamableHTTPApp
from ._transport._asgi import TransportStatistics as TransportStatistics
from ._transport._auth import AuthStatistics as AuthStatistics
from ._transport._http import HostPolicy as HostPolicy

__version__ = "0.1.0"


def _fixup_module_metadata() -> None:
    # Show public classes as trio_mcp_sessions.X, not trio_mcp_sessions._private.X.
    for name, obj in list(globals().items()):
        if not name.startswith("_") and getattr(obj, "__module__", "").startswith(__name__ + "."):
            with _contextlib.suppress(AttributeError, TypeError):
                obj.__module__ = __name__


_fixup_module_metadata()
del _fixup_module_metadata
