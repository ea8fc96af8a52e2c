"""Version negotiation, the ``initialize`` handshake and the session state machine.

Sans-IO: this module decides *what* is allowed; the session runs it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Final

from ._jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    InputLimits,
    ProtocolError,
    Request,
    RequestId,
)

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "ClientInfo",
    "SessionState",
    "SessionStateMachine",
    "negotiate_version",
    "parse_initialize",
    "supports_batches",
    "supports_priming",
]

#: Newest first. The handshake era of MCP; 2026-07-28 removed sessions altogether.
SUPPORTED_PROTOCOL_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26")
LATEST_PROTOCOL_VERSION: Final = SUPPORTED_PROTOCOL_VERSIONS[0]


def negotiate_version(requested: str) -> str:
    """Answer the client's version when we support it, else our latest."""
    return requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION


def supports_batches(version: str) -> bool:
    """JSON-RPC batches exist only in 2025-03-26 (removed in 2025-06-18)."""
    return version == "2025-03-26"


def supports_priming(version: str) -> bool:
    """Priming events and server-side polling close arrived in 2025-11-25 (SEP-1699)."""
    return version >= "2025-11-25"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the client said about itself in ``initialize``."""

    requested_version: str
    protocol_version: str
    capabilities: dict[str, Any]
    client_info: dict[str, Any]
    raw_params: dict[str, Any] = field(repr=False)

    def has_capability(self, name: str, sub: str | None = None) -> bool:
        """Whether the client declared capability *name* (and sub-capability *sub*)."""
        value = self.capabilities.get(name)
        if not isinstance(value, dict):
            return False
        if sub is None:
            return True
        # elicitation: {} means "form" mode only (2025-11-25 made modes explicit).
        if name == "elicitation" and sub == "form" and not value:
            return True
        return sub in value


def parse_initialize(request: Request, limits: InputLimits | None = None) -> ClientInfo:
    """Validate ``initialize`` params and negotiate the version.

    Args:
        request: The ``initialize`` request.
        limits: Bounds what the session keeps (and stores) of the params;
            ``None`` for none (a restore replays params we accepted before).

    Raises:
        ProtocolError: ``-32602`` when the params are missing, malformed or
            larger than ``limits.max_client_state_bytes``.
    """
    params = request.params
    if params is None:
        raise ProtocolError(INVALID_PARAMS, "initialize requires params", request_id=request.id)
    version = params.get("protocolVersion")
    capabilities = params.get("capabilities", {})
    client_info = params.get("clientInfo", {})
    if not isinstance(version, str) or not version:
        raise ProtocolError(
            INVALID_PARAMS, "initialize: protocolVersion must be a string", request_id=request.id
        )
    if not isinstance(capabilities, dict):
        raise ProtocolError(
            INVALID_PARAMS, "initialize: capabilities must be an object", request_id=request.id
        )
    if not isinstance(client_info, dict):
        raise ProtocolError(
            INVALID_PARAMS, "initialize: clientInfo must be an object", request_id=request.id
        )
    if limits is not None:
        # Measured as the session record stores it; decode_body already
        # bounded the depth, so this cannot recurse too far.
        size = len(json.dumps(params, separators=(",", ":")))
        if size > limits.max_client_state_bytes:
            raise ProtocolError(
                INVALID_PARAMS,
                f"initialize: params are {size} bytes as JSON, more than the "
                f"{limits.max_client_state_bytes} a session keeps",
                request_id=request.id,
            )
    return ClientInfo(
        requested_version=version,
        protocol_version=negotiate_version(version),
        capabilities=capabilities,
        client_info=client_info,
        raw_params=params,
    )


class SessionState(enum.Enum):
    """Where a session stands in the MCP lifecycle."""

    NEW = "new"
    """Created; ``initialize`` not yet answered."""
    INITIALIZED = "initialized"
    """``initialize`` answered; the client may or may not have sent ``initialized``."""
    OPERATING = "operating"
    """``notifications/initialized`` received."""
    CLOSED = "closed"


#: Requests a client may send before ``notifications/initialized``.
_PRE_INITIALIZED_METHODS: Final = frozenset({"ping", "logging/setLevel"})


class SessionStateMachine:
    """The lifecycle rules of one session, with no I/O.

    The state machine is lenient in one documented way: requests are served
    once ``initialize`` has been *answered*, even if the client has not sent
    ``notifications/initialized`` yet (several clients pipeline them).
    """

    __slots__ = ("_outbound_id", "state")

    def __init__(self) -> None:
        self.state = SessionState.NEW
        self._outbound_id = 0

    def initialize_answered(self) -> None:
        if self.state is not SessionState.NEW:
            raise RuntimeError(f"initialize answered in state {self.state}")
        self.state = SessionState.INITIALIZED

    def receive_notification(self, method: str) -> None:
        if method == "notifications/initialized" and self.state is SessionState.INITIALIZED:
            self.state = SessionState.OPERATING

    def check_request(self, request: Request) -> None:
        """Raise :class:`ProtocolError` if *request* is not allowed now."""
        if request.method == "initialize":
            raise ProtocolError(
                INVALID_REQUEST,
                "Invalid Request: session is already initialized",
                request_id=request.id,
            )
        if self.state is SessionState.NEW and request.method not in _PRE_INITIALIZED_METHODS:
            raise ProtocolError(
                INVALID_REQUEST,
                "Invalid Request: initialize must come first",
                request_id=request.id,
            )
        if self.state is SessionState.CLOSED:
            raise ProtocolError(INVALID_REQUEST, "Invalid Request: session closed")

    def next_outbound_id(self) -> RequestId:
        """A fresh id for a server-to-client request, never reused in this session."""
        self._outbound_id += 1
        return self._outbound_id

    def close(self) -> None:
        self.state = SessionState.CLOSED
