"""The handle store a tool author uses: server-minted handles instead of session state.

At 2026-07-28 there is no session to keep a shopping cart in; a creating
tool returns a handle and later calls pass it back
(``server/tools.mdx#stateful-tools``). :class:`HandleStore` mints the handles,
binds each to the principal of the request that created it, bounds them
(caps, idle expiry, maximum lifetime, value size) and answers every "cannot"
as a tool execution error the model can act on.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, final

import trio

from .._errors import StoreUnavailable
from ._errors import HandleError, HandleLimitReached, HandleNotFound
from ._limits import (
    HandleLimits,
    HandleStatistics,
    check_prefix,
    handle_key,
    mint_handle,
    retention_note,
)
from ._memory import InMemoryHandleBackend

if TYPE_CHECKING:
    from .._server._context import Context
    from ._backend import HandleBackend

__all__ = ["HandleStore"]

logger = logging.getLogger("trio_mcp_sessions.handles")


@final
class HandleStore:
    """Bounded, principal-bound handles to JSON values, for tools in both eras.

    ::

        carts = HandleStore("cart", create_tool="create_cart")

        @server.tool(description="Start a cart. " + carts.retention_note())
        async def create_cart(ctx: Context) -> dict[str, str]:
            return {"cart_id": await carts.create(ctx, {"items": []})}

        @server.tool()
        async def add_item(ctx: Context, cart_id: str, sku: str) -> str:
            cart = await carts.get(ctx, cart_id)  # HandleNotFound: an isError result
            cart["items"].append(sku)
            await carts.update(ctx, cart_id, cart)
            return f"{len(cart['items'])} items"

    A handle is ``<name>_`` and 192 random bits; the backend keeps only its
    SHA-256. A handle created with a principal (``Context.principal``, set by
    the application's ``principal`` hook) answers only that principal; one
    created without works for whoever holds it (a bearer token, hence the
    entropy and the bounded lifetime). Unknown, expired and other-principal
    handles get the same answer. Updates are last-writer-wins.

    Args:
        name: What a handle is to the model ("cart"); also the handles'
            prefix (lower-case letters and digits) and the statistics' label.
        create_tool: The tool that makes a new one, named in the error text.
        limits: The bounds; see :class:`HandleLimits`.
        backend: Where records live (default: this process's memory). One
            backend per store.
    """

    def __init__(
        self,
        name: str,
        *,
        create_tool: str | None = None,
        limits: HandleLimits | None = None,
        backend: HandleBackend | None = None,
    ) -> None:
        check_prefix(name)
        self.name = name
        self.create_tool = create_tool
        self.limits = HandleLimits() if limits is None else limits
        self.backend: HandleBackend = InMemoryHandleBackend() if backend is None else backend
        self._handles = 0
        self._created = 0
        self._deleted = 0
        self._expired = 0
        self._evicted = 0
        self._refused = 0
        self._not_found = 0
        self._store_errors = 0

    # -- what the model is told ----------------------------------------------------

    def retention_note(self) -> str:
        """The retention policy, for the creating tool's description (the spec asks for it)."""
        return retention_note(self.name, self.limits)

    def _not_found_error(self) -> HandleNotFound:
        self._not_found += 1
        again = f"call {self.create_tool} again" if self.create_tool else "create a new one"
        return HandleNotFound(
            f"{self.name} handle expired or unknown; {again} and use the handle it returns"
        )

    def _unavailable(self, exc: StoreUnavailable) -> HandleError:
        self._store_errors += 1
        # The text, not the exception: a kept record must not keep its traceback alive.
        logger.warning("handle store %r: %s", self.name, str(exc))
        return HandleError(f"the {self.name} store is unavailable; try again in a moment")

    def _encode(self, value: Any) -> bytes:
        """*value* as compact JSON, within ``max_value_bytes``.

        Raises:
            TypeError: *value* is not JSON-serializable (a bug in the tool).
            HandleError: It is too large (the model may make it smaller).
        """
        try:
            data = json.dumps(
                value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{self.name} values must be JSON-serializable: {exc}") from exc
        if len(data) > self.limits.max_value_bytes:
            self._refused += 1
            raise HandleError(
                f"the {self.name} is too large to keep ({len(data)} bytes, at most "
                f"{self.limits.max_value_bytes}); make it smaller"
            )
        return data

    def _key(self, handle: object) -> str | None:
        return handle_key(self.name, handle)

    # -- the operations ----------------------------------------------------------------

    async def create(self, ctx: Context, value: Any) -> str:
        """Store *value* under a new handle bound to ``ctx.principal``; return the handle.

        At a cap the policy evicts (least recently used or oldest: of the
        principal at its cap, of anyone at the global one) or refuses.

        Raises:
            HandleLimitReached: At a cap under ``REJECT``.
            HandleError: The value is too large, or the backend is unavailable.
            TypeError: *value* is not JSON-serializable.
        """
        data = self._encode(value)
        handle = mint_handle(self.name)
        key = self._key(handle)
        assert key is not None
        try:
            outcome = await self.backend.create(key, ctx.principal, data, self.limits)
        except StoreUnavailable as exc:
            raise self._unavailable(exc) from exc
        self._handles = outcome.handles
        self._expired += outcome.expired
        self._evicted += outcome.evicted
        if not outcome.created:
            self._refused += 1
            raise HandleLimitReached(
                f"too many open {self.name}s (at most {self.limits.max_per_principal} "
                f"per user, {self.limits.max_handles} in all); delete one you no longer "
                "need, or wait for one to expire"
            )
        self._created += 1
        return handle

    async def get(self, ctx: Context, handle: object) -> Any:
        """The value stored under *handle* (a fresh copy), marking it used.

        Raises:
            HandleNotFound: Unknown, expired, or another principal's.
            HandleError: The backend is unavailable.
        """
        key = self._key(handle)
        if key is None:
            await trio.lowlevel.checkpoint()
            raise self._not_found_error()
        try:
            data, expired = await self.backend.get(key, ctx.principal, self.limits)
        except StoreUnavailable as exc:
            raise self._unavailable(exc) from exc
        self._expired += expired
        if data is None:
            raise self._not_found_error()
        return json.loads(data)

    async def update(self, ctx: Context, handle: object, value: Any) -> None:
        """Replace the value under *handle*, marking it used (its lifetime does not restart).

        Raises:
            HandleNotFound: Unknown, expired, or another principal's.
            HandleError: The value is too large, or the backend is unavailable.
            TypeError: *value* is not JSON-serializable.
        """
        key = self._key(handle)
        if key is None:
            await trio.lowlevel.checkpoint()
            raise self._not_found_error()
        data = self._encode(value)
        try:
            done, expired = await self.backend.update(key, ctx.principal, data, self.limits)
        except StoreUnavailable as exc:
            raise self._unavailable(exc) from exc
        self._expired += expired
        if not done:
            raise self._not_found_error()

    async def delete(self, ctx: Context, handle: object, *, missing_ok: bool = False) -> None:
        """Forget *handle* now (a ``close_cart`` tool frees its slot at once).

        Raises:
            HandleNotFound: Unknown, expired, or another principal's (unless *missing_ok*).
            HandleError: The backend is unavailable.
        """
        key = self._key(handle)
        found = False
        if key is None:
            await trio.lowlevel.checkpoint()
        else:
            try:
                found, expired = await self.backend.delete(key, ctx.principal, self.limits)
            except StoreUnavailable as exc:
                raise self._unavailable(exc) from exc
            self._expired += expired
        if found:
            self._deleted += 1
            self._handles = max(0, self._handles - 1)
        elif not missing_ok:
            raise self._not_found_error()

    async def purge_expired(self) -> int:
        """Remove every expired handle now; how many went.

        Raises:
            StoreUnavailable: The backend failed.
        """
        removed, self._handles = await self.backend.purge_expired(self.limits)
        self._expired += removed
        return removed

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep expired handles every ``sweep_interval`` until cancelled.

        Optional: lookups and creates remove what has expired as they meet it,
        and the caps count only live handles; the sweep returns the memory of
        handles nobody asks for again. A failing backend is logged and retried
        at the next sweep.
        """
        task_status.started()
        while True:
            await trio.sleep(self.limits.sweep_interval)
            try:
                await self.purge_expired()
            except StoreUnavailable as exc:
                self._store_errors += 1
                logger.warning("handle store %r: sweep failed: %s", self.name, str(exc))

    async def aclose(self) -> None:
        """Close the backend."""
        await self.backend.aclose()

    def statistics(self) -> HandleStatistics:
        backend = self.backend
        handles = (
            len(backend.table) if isinstance(backend, InMemoryHandleBackend) else self._handles
        )
        return HandleStatistics(
            name=self.name,
            handles=handles,
            max_handles=self.limits.max_handles,
            max_per_principal=self.limits.max_per_principal,
            created=self._created,
            deleted=self._deleted,
            expired=self._expired,
            evicted=self._evicted,
            refused=self._refused,
            not_found=self._not_found,
            store_errors=self._store_errors,
        )
