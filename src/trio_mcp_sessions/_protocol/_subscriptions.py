"""``subscriptions/listen`` (2026-07-28): the filter, what it lets through, the frames. Sans-IO.

A listen stream delivers only the notification types its request opted in
to (``basic/patterns/subscriptions.mdx#opening-a-stream``): the three
list-changed notifications and ``notifications/resources/updated`` for the
URIs named in ``resourceSubscriptions``; never progress or log messages.
Every frame on it carries the listen request's id in
``_meta["io.modelcontextprotocol/subscriptionId"]``: the acknowledgement
first, then the notifications, then (when the server ends the stream) a
``SubscriptionsListenResult``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._era import META_SERVER_INFO, META_SUBSCRIPTION_ID
from ._jsonrpc import INVALID_PARAMS, Notification, ProtocolError, RequestId, Response

__all__ = [
    "ACKNOWLEDGED",
    "CHANGE_METHODS",
    "LISTEN",
    "LIST_CHANGED",
    "RESOURCE_UPDATED",
    "SubscriptionFilter",
    "acknowledgement",
    "closing_result",
    "tagged",
]

#: The list-changed notifications, each with the filter field that asks for it.
LIST_CHANGED: Final = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}
RESOURCE_UPDATED: Final = "notifications/resources/updated"
#: Everything a listen stream can carry after its acknowledgement.
CHANGE_METHODS: Final = frozenset({*LIST_CHANGED, RESOURCE_UPDATED})
ACKNOWLEDGED: Final = "notifications/subscriptions/acknowledged"
LISTEN: Final = "subscriptions/listen"

#: Which capability (and which of its flags) a filter field needs the server to declare.
_CAPABILITY_OF: Final = {
    "toolsListChanged": ("tools", "listChanged"),
    "promptsListChanged": ("prompts", "listChanged"),
    "resourcesListChanged": ("resources", "listChanged"),
    "resourceSubscriptions": ("resources", "subscribe"),
}


def _invalid(message: str, request_id: RequestId | None, data: Any = None) -> ProtocolError:
    return ProtocolError(
        INVALID_PARAMS,
        f"Invalid params: subscriptions/listen: {message}",
        request_id=request_id,
        data=data,
    )


@dataclass(frozen=True, slots=True)
class SubscriptionFilter:
    """What one listen stream opted in to (schema ``SubscriptionFilter``).

    Attributes:
        kinds: The list-changed filter fields set to true (``toolsListChanged``...).
        uris: ``resourceSubscriptions``, in request order, without repeats.
    """

    kinds: frozenset[str] = frozenset()
    uris: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls,
        params: Mapping[str, Any] | None,
        *,
        max_uris: int,
        max_uri_length: int,
        request_id: RequestId | None = None,
    ) -> SubscriptionFilter:
        """The filter of a ``subscriptions/listen`` request's *params*, or -32602.

        ``notifications`` is required; unknown fields in it are ignored (a
        newer client may know more kinds), known ones must have their types.
        At most *max_uris* URIs of at most *max_uri_length* characters each:
        a stream holds its URIs for as long as it lives.
        """
        raw = (params or {}).get("notifications")
        if not isinstance(raw, Mapping):
            raise _invalid("params.notifications must be an object", request_id)
        kinds: set[str] = set()
        for field in LIST_CHANGED.values():
            value = raw.get(field)
            if value is not None and not isinstance(value, bool):
                raise _invalid(f"notifications.{field} must be a boolean", request_id)
            if value:
                kinds.add(field)
        uris = raw.get("resourceSubscriptions")
        if uris is None:
            return cls(frozenset(kinds))
        if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in uris):
            raise _invalid(
                "notifications.resourceSubscriptions must be a list of strings", request_id
            )
        unique = tuple(dict.fromkeys(uris))
        if len(unique) > max_uris:
            raise _invalid(
                f"at most {max_uris} resourceSubscriptions per stream, got {len(unique)}",
                request_id,
                {"max_uris": max_uris},
            )
        if any(len(uri) > max_uri_length for uri in unique):
            raise _invalid(
                f"a resourceSubscriptions URI is longer than {max_uri_length} characters",
                request_id,
                {"max_uri_length": max_uri_length},
            )
        return cls(frozenset(kinds), unique)

    def honoured(self, capabilities: Mapping[str, Any]) -> SubscriptionFilter:
        """The subset a server with *capabilities* agrees to deliver (the acknowledgement's).

        A kind whose capability the server does not declare is left out
        (``SubscriptionsAcknowledgedNotificationParams``): a server without
        prompts never sends ``prompts/list_changed``.
        """

        def declared(field: str) -> bool:
            capability, flag = _CAPABILITY_OF[field]
            entry = capabilities.get(capability)
            return isinstance(entry, Mapping) and bool(entry.get(flag))

        kinds = frozenset(kind for kind in self.kinds if declared(kind))
        uris = self.uris if declared("resourceSubscriptions") else ()
        return SubscriptionFilter(kinds, uris)

    def to_json(self) -> dict[str, Any]:
        """The wire form: only what is on (an absent field is "not subscribed")."""
        out: dict[str, Any] = {
            field: True for field in LIST_CHANGED.values() if field in self.kinds
        }
        if self.uris:
            out["resourceSubscriptions"] = list(self.uris)
        return out

    def wants(self, method: str, params: Mapping[str, Any] | None) -> bool:
        """Whether a stream with this filter gets notification *method* with *params*."""
        kind = LIST_CHANGED.get(method)
        if kind is not None:
            return kind in self.kinds
        if method == RESOURCE_UPDATED:
            uri = (params or {}).get("uri")
            return isinstance(uri, str) and uri in self.uris
        return False  # progress, logs, anything else: never on a listen stream


def _meta_with(params: Mapping[str, Any] | None, subscription_id: RequestId) -> dict[str, Any]:
    out = dict(params or {})
    meta = out.get("_meta")
    out["_meta"] = {
        **(meta if isinstance(meta, Mapping) else {}),
        META_SUBSCRIPTION_ID: subscription_id,
    }
    return out


def acknowledgement(subscription_id: RequestId, honoured: SubscriptionFilter) -> Notification:
    """The first frame of a listen stream: the honoured filter, tagged."""
    return Notification(
        ACKNOWLEDGED,
        {"_meta": {META_SUBSCRIPTION_ID: subscription_id}, "notifications": honoured.to_json()},
    )


def tagged(
    method: str, params: Mapping[str, Any] | None, subscription_id: RequestId
) -> Notification:
    """*method* as it goes out on the stream: its ``_meta`` names the subscription."""
    return Notification(method, _meta_with(params, subscription_id))


def closing_result(
    subscription_id: RequestId, server_info: Mapping[str, Any] | None = None
) -> Response:
    """The graceful end (``SubscriptionsListenResult``): the response to the listen request."""
    meta: dict[str, Any] = {META_SUBSCRIPTION_ID: subscription_id}
    if server_info is not None:
        meta[META_SERVER_INFO] = dict(server_info)
    return Response(subscription_id, {"resultType": "complete", "_meta": meta})
