"""A :class:`Peer` written with the public API alone: server handlers run without a server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trio_mcp_sessions import ClientInfo

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Set as AbstractSet

    from trio_mcp_sessions import InputRequest, Notification, RequestId


class FakePeer:
    """A client of *version* with *capabilities* that never talks back.

    Without a version, asking who the client is fails (a session before its
    ``initialize``). The state it keeps counts its changes.
    """

    session_id = "s"
    is_restored = False

    def __init__(
        self, version: str | None = None, capabilities: dict[str, Any] | None = None
    ) -> None:
        self._client = (
            ClientInfo(
                requested_version=version,
                protocol_version=version,
                capabilities=capabilities or {},
                client_info={"name": "test-client", "version": "1"},
                raw_params={},
            )
            if version is not None
            else None
        )
        self._subscriptions: set[str] = set()
        self.log_level: str | None = None
        self.changes = 0

    @property
    def client(self) -> ClientInfo:
        if self._client is None:
            raise AssertionError("not used")
        return self._client

    @property
    def subscriptions(self) -> AbstractSet[str]:
        return self._subscriptions

    def set_log_level(self, level: str) -> None:
        self.log_level = level
        self.changes += 1

    def subscribe(self, uri: str) -> None:
        self._subscriptions.add(uri)
        self.changes += 1

    def unsubscribe(self, uri: str) -> None:
        self._subscriptions.discard(uri)
        self.changes += 1

    async def send_notification(
        self, notification: Notification, *, related_request: RequestId | None
    ) -> None:
        raise AssertionError("not used")

    async def send_request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        related_request: RequestId | None,
        timeout: float,
    ) -> dict[str, Any]:
        raise AssertionError("not used")

    def close_request_stream(self, request_id: RequestId) -> None:
        raise AssertionError("not used")

    async def request_input(
        self,
        requests: Mapping[str, InputRequest],
        *,
        related_request: RequestId | None,
        timeout: float,
    ) -> dict[str, dict[str, Any]]:
        raise AssertionError("not used")
