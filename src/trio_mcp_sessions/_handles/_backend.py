"""The one small protocol every handle backend implements (memory, SQLite, Redis).

A backend keeps records by *key* (a digest of the handle, never the handle)
with their principal, value (JSON bytes), creation and last-use times. It
does the cap arithmetic itself, atomically where the records are (one
transaction, one Lua script), because a cap shared by several processes can
only be exact there. Times are the backend's own clock: trio's for memory,
wall-clock seconds for records that outlive a process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, final, runtime_checkable

if TYPE_CHECKING:
    from ._limits import HandleLimits

__all__ = ["HandleBackend", "HandleCreated"]


@final
@dataclass(frozen=True, slots=True)
class HandleCreated:
    """What :meth:`HandleBackend.create` did.

    Attributes:
        created: False when refused at a cap (``REJECT``); nothing changed then
            (but expired records may have been removed).
        evicted: Records removed by the policy to make room.
        expired: Expired records removed on the way.
        handles: Live records afterwards.
    """

    created: bool
    evicted: int
    expired: int
    handles: int


@runtime_checkable
class HandleBackend(Protocol):
    """Where a :class:`HandleStore` keeps its records. One backend serves one store.

    Every method is a checkpoint and raises
    :class:`~trio_mcp_sessions.StoreUnavailable` when the storage fails. A
    record of another principal is treated as absent (and not touched).
    """

    async def create(
        self, key: str, principal: str | None, value: bytes, limits: HandleLimits
    ) -> HandleCreated:
        """Add a record, first making room by *limits* (or refusing)."""
        ...

    async def get(
        self, key: str, principal: str | None, limits: HandleLimits
    ) -> tuple[bytes | None, int]:
        """The value (``None``: absent or expired), marking it used; and how many expired records
        this call removed."""
        ...

    async def update(
        self, key: str, principal: str | None, value: bytes, limits: HandleLimits
    ) -> tuple[bool, int]:
        """Replace the value, marking it used; false when absent or expired.

        Also returns how many expired records this call removed."""
        ...

    async def delete(
        self, key: str, principal: str | None, limits: HandleLimits
    ) -> tuple[bool, int]:
        """Remove the record; false when absent or expired (and the expired count)."""
        ...

    async def purge_expired(self, limits: HandleLimits) -> tuple[int, int]:
        """Remove expired records: ``(removed, live records left)``."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources (idempotent)."""
        ...
