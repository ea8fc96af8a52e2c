"""The bounded session manager, one owner per job.

``_limits`` (the bounds, validated), ``_table`` (live sessions, idle order,
busy set, slots, the victim choice), ``_admission`` (creation budgets,
receipts, refunds), ``_persistence`` (records in the stores) and
``_manager`` (:class:`BoundedSessionManager`, the coordinator). The names
below are what ``trio_mcp_sessions._manager`` has always exported.
"""

from .._interface import RestoreOutcome, SessionInfo, SessionManager
from ._admission import Admission
from ._inflight import InflightLimiter, InflightSlot, InflightStatistics
from ._limits import CallLimits, EvictionPolicy, SessionLimits
from ._manager import BoundedSessionManager, new_session_id
from ._statistics import ManagerStatistics

__all__ = [
    "Admission",
    "BoundedSessionManager",
    "CallLimits",
    "EvictionPolicy",
    "InflightLimiter",
    "InflightSlot",
    "InflightStatistics",
    "ManagerStatistics",
    "RestoreOutcome",
    "SessionInfo",
    "SessionLimits",
    "SessionManager",
    "new_session_id",
]
