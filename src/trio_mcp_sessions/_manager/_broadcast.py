"""Change notifications to everyone listening: sessions, listen streams, other instances.

:class:`Broadcast` is the one owner of "the server changed": the manager's
``notify_all`` and ``notify_resource_updated`` go through it. It delivers to
this instance's sessions (their GET streams), to the change listeners
attached to it (the app attaches the sessionless service's listen streams,
so the manager never imports the transport or the sessionless half), and,
with a :class:`ChangeRelay` (such as :class:`RedisBroadcast`), to the other
instances, whose relays hand the change to their own broadcast.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, final

import trio

from .._protocol._subscriptions import CHANGE_METHODS, RESOURCE_UPDATED

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from .._session import Session
    from ._table import SessionTable

__all__ = ["Broadcast", "ChangeListener", "ChangeRelay"]

logger = logging.getLogger("trio_mcp_sessions.broadcast")


class ChangeListener(Protocol):
    """Receives this instance's changes (the listen streams' hub is one).

    ``deliver`` must not wait or raise: it runs inside every broadcast.
    """

    def deliver(self, method: str, params: Mapping[str, Any] | None) -> int:
        """Hand over one notification; return how many receivers took it."""
        ...


class ChangeRelay(Protocol):
    """Carries changes between instances behind one endpoint (e.g. Redis pub/sub).

    Only the changes a listen stream can subscribe to travel (the three
    list-changed notifications and ``notifications/resources/updated``).
    """

    async def publish(self, method: str, params: Mapping[str, Any] | None) -> None:
        """Send one change to the other instances; bounded in time, never raises."""
        ...

    async def run(
        self,
        deliver: Callable[[str, dict[str, Any] | None], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Receive the other instances' changes and ``await deliver(...)`` each, until cancelled."""
        ...


@final
class Broadcast:
    """Delivers a change to every receiver: sessions, listeners, then the relay."""

    __slots__ = ("_listeners", "_scope", "_table", "relay")

    def __init__(self, table: SessionTable[Session], relay: ChangeRelay | None = None) -> None:
        self._table = table
        self._listeners: list[ChangeListener] = []
        self.relay = relay
        self._scope = trio.CancelScope()

    def add_listener(self, listener: ChangeListener) -> None:
        """Also deliver every change to *listener* (the app attaches its listen streams)."""
        self._listeners.append(listener)

    async def notify_all(self, method: str, params: Mapping[str, Any] | None = None) -> int:
        """*method* to every ready session and every listener that wants it; then the relay.

        Only the changes a listen stream can ask for go to the relay (other
        notifications, e.g. ``notifications/message``, stay on this instance).

        Returns:
            How many sessions and listen streams of this instance got it.
        """
        count = await self._deliver_here(method, params, everyone=True)
        if self.relay is not None and method in CHANGE_METHODS:
            await self.relay.publish(method, params)
        await trio.lowlevel.checkpoint()
        return count

    async def notify_resource_updated(self, uri: str) -> int:
        """``notifications/resources/updated`` to whoever subscribed to *uri*, here and beyond.

        Sessions that ``resources/subscribe``d to *uri* and listen streams
        with *uri* in their ``resourceSubscriptions`` (exact match).

        Returns:
            How many sessions and listen streams of this instance got it.
        """
        params = {"uri": uri}
        count = await self._deliver_here(RESOURCE_UPDATED, params, everyone=False)
        if self.relay is not None:
            await self.relay.publish(RESOURCE_UPDATED, params)
        await trio.lowlevel.checkpoint()
        return count

    async def _deliver_here(
        self, method: str, params: Mapping[str, Any] | None, *, everyone: bool
    ) -> int:
        """This instance's receivers; *everyone*: every ready session, else the subscribed."""
        count = 0
        uri = params.get("uri") if params is not None and method == RESOURCE_UPDATED else None
        for session in list(self._table.sessions.values()):
            if not session.is_open:
                continue
            if everyone and session.client_info is None:
                continue
            if not everyone and uri not in session.subscriptions:
                continue
            await session.notify(method, dict(params) if params else None)
            count += 1
        for listener in self._listeners:
            count += listener.deliver(method, params)
        return count

    async def _from_elsewhere(self, method: str, params: dict[str, Any] | None) -> None:
        """A change another instance made: delivered here as it would have been there."""
        if method in CHANGE_METHODS:
            await self._deliver_here(method, params, everyone=method != RESOURCE_UPDATED)

    async def run(self) -> None:
        """Run the relay's receiving side until :meth:`stop` (in the manager's nursery)."""
        if self.relay is None:
            return
        with self._scope:
            await self.relay.run(self._from_elsewhere)

    def stop(self) -> None:
        self._scope.cancel()
