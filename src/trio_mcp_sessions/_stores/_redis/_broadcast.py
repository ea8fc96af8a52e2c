"""The Redis change relay: list changes and resource updates reach every instance.

Several instances behind one endpoint each hold their own listen streams and
sessions; a tool that changes the tool list runs on one of them. With
:class:`RedisBroadcast` as the manager's ``relay``, each change goes out on
one Redis pub/sub channel and every other instance delivers it to its own
receivers, exactly as a change of its own.

Pub/sub is fire-and-forget: a change published while an instance is
disconnected from Redis does not reach that instance (its clients re-list
when they reconnect, as the spec expects of a dropped stream). The reader
reconnects with exponential backoff (with jitter), and no failure of Redis
fails a broadcast: this instance's receivers are served first, and a
publish is bounded by *publish_timeout*.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import trio

from ..._errors import StoreUnavailable
from .._guard import StoreGuard
from ._client import _backend_errors, _check_prefix, _map_backend_errors, _require_bytes_client

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    import coredis

__all__ = ["RedisBroadcast", "RedisBroadcastStatistics"]

logger = logging.getLogger("trio_mcp_sessions.stores.redis")


@dataclass(frozen=True, slots=True)
class RedisBroadcastStatistics:
    """What a :class:`RedisBroadcast` did (see :meth:`RedisBroadcast.statistics`).

    Attributes:
        connected: Whether its subscription is established now.
        circuit: The publish circuit (``closed``; ``open`` while Redis counts
            as down: publishes then fail at once, one probe every few seconds).
        published: Changes sent to the other instances.
        publish_failures: Changes that could not be sent (Redis down, slow,
            or the circuit open).
        too_large: Changes not sent because they exceed ``max_message_bytes``.
        received: Changes of other instances delivered here.
        ignored: Messages on the channel that were not a change (too large,
            not JSON, wrong shape).
        reconnects: Times the subscription was re-established after a loss.
    """

    connected: bool
    circuit: str
    published: int
    publish_failures: int
    too_large: int
    received: int
    ignored: int
    reconnects: int


@final
class RedisBroadcast:
    """Carries changes between instances over Redis pub/sub (a ``ChangeRelay``).

    Give it to the manager (``BoundedSessionManager(..., relay=...)``,
    ``StreamableHTTPApp(..., relay=...)``, or ``--redis`` on the command
    line); the manager runs its reader in its nursery.

    Args:
        client: An open ``coredis.Redis`` with ``decode_responses=False``
            (the pub/sub subscription takes a connection of its own).
        prefix: Namespace of the channel (``<prefix>:changes``); instances
            that share it share their changes.
        publish_timeout: Seconds a publish may take before it counts as failed;
            two failures in a row open a circuit (later publishes fail at once
            until a probe succeeds), so a frozen Redis does not slow every
            broadcast by this much.
        max_message_bytes: A larger change is not published (counted in
            ``too_large``), and a larger message received is ignored.
        reconnect_delay: Seconds before the first reconnection attempt; it
            doubles per failed attempt, up to *max_reconnect_delay*.
        max_reconnect_delay: The longest wait between attempts.
    """

    def __init__(
        self,
        client: coredis.Redis[bytes],
        *,
        prefix: str = "mcp",
        publish_timeout: float = 1.0,
        max_message_bytes: int = 64 * 1024,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 5.0,
    ) -> None:
        _check_prefix(prefix)
        _require_bytes_client(client)
        for name, value in (
            ("publish_timeout", publish_timeout),
            ("reconnect_delay", reconnect_delay),
            ("max_reconnect_delay", max_reconnect_delay),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be at least 1, got {max_message_bytes}")
        self._client = client
        self.channel = f"{prefix}:changes".encode()
        self.publish_timeout = publish_timeout
        self.max_message_bytes = max_message_bytes
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        #: Tells this instance's own messages apart when they come back.
        self._origin = secrets.token_hex(8)
        self._connected = False
        self._subscriptions = 0
        self._published = 0
        self._publish_failures = 0
        self._too_large = 0
        self._received = 0
        self._ignored = 0
        self._guard = StoreGuard("broadcast", timeout=publish_timeout)

    async def publish(self, method: str, params: Mapping[str, Any] | None) -> None:
        """Send one change to the other instances; a failure is counted, never raised."""
        data = json.dumps(
            {"o": self._origin, "m": method, "p": dict(params) if params else None},
            separators=(",", ":"),
        ).encode()
        if len(data) > self.max_message_bytes:
            self._too_large += 1
            logger.warning(
                "change %s not sent to other instances: %d bytes (max_message_bytes %d)",
                method,
                len(data),
                self.max_message_bytes,
            )
            await trio.lowlevel.checkpoint()
            return
        try:
            # Bounded, counted and logged there (not per change while the circuit is open).
            await self._guard.call("broadcast publish", self._publish, data)
        except StoreUnavailable:
            self._publish_failures += 1
            return
        self._published += 1

    async def _publish(self, data: bytes) -> None:
        with _map_backend_errors("publish"):
            await self._client.publish(self.channel, data)

    async def run(
        self,
        deliver: Callable[[str, dict[str, Any] | None], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver the other instances' changes until cancelled; reconnect after a loss.

        Started does not mean subscribed (Redis may be down at start):
        :attr:`RedisBroadcastStatistics.connected` says when it is.
        """
        task_status.started()
        delay = self.reconnect_delay
        while True:
            try:
                await self._listen(deliver)
            except* _backend_errors() as group:
                # A string, not the exception: a log handler that keeps records
                # would keep its traceback, and the failed connection, alive.
                logger.warning(
                    "lost the change channel %r: %s; reconnecting in %.1f s",
                    self.channel.decode(),
                    repr(group.exceptions[0]),
                    delay,
                )
            else:
                delay = self.reconnect_delay  # it ran, then ended: start over quickly
            finally:
                self._connected = False
            await trio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.max_reconnect_delay)

    async def _listen(
        self, deliver: Callable[[str, dict[str, Any] | None], Awaitable[None]]
    ) -> None:
        async with self._client.pubsub(
            channels=[self.channel], ignore_subscribe_messages=True, retry_policy=None
        ) as pubsub:
            self._connected = True
            self._subscriptions += 1
            if self._subscriptions > 1:
                logger.info("change channel %r subscribed again", self.channel.decode())
            async for message in pubsub:
                change = self._decode(message.get("data"))
                if change is not None:
                    self._received += 1
                    await deliver(*change)

    def _decode(self, data: object) -> tuple[str, dict[str, Any] | None] | None:
        """A change of another instance, or ``None`` (own, or not a change: counted)."""
        if not isinstance(data, bytes) or len(data) > self.max_message_bytes:
            self._ignored += 1
            return None
        try:
            decoded = json.loads(data)
        except (ValueError, RecursionError):
            self._ignored += 1
            return None
        if isinstance(decoded, dict) and decoded.get("o") == self._origin:
            return None  # our own, already delivered here
        if not isinstance(decoded, dict):
            self._ignored += 1
            return None
        method, params = decoded.get("m"), decoded.get("p")
        if not isinstance(method, str) or not (params is None or isinstance(params, dict)):
            self._ignored += 1
            return None
        return method, params

    def statistics(self) -> RedisBroadcastStatistics:
        return RedisBroadcastStatistics(
            connected=self._connected,
            circuit=self._guard.statistics().state,
            published=self._published,
            publish_failures=self._publish_failures,
            too_large=self._too_large,
            received=self._received,
            ignored=self._ignored,
            reconnects=max(0, self._subscriptions - 1),
        )
