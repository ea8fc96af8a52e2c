"""What a tool sees when a handle cannot be used: tool execution errors that say what to do.

Each is a :class:`~trio_mcp_sessions.ToolError`, so a tool that lets one
escape answers an ``isError`` result with its text, which the model reads
(``server/tools.mdx#stateful-tools``: an expired or unknown handle "should
return a tool execution error that says so").
"""

from __future__ import annotations

from .._server._errors import ToolError

__all__ = ["HandleError", "HandleLimitReached", "HandleNotFound"]


class HandleError(ToolError):
    """Base of the handle store's tool execution errors (the value was too large,
    the backend is unavailable, and the subclasses)."""


class HandleNotFound(HandleError):
    """The handle is unknown, expired, or another principal's: the same answer for all three.

    Telling them apart would tell a caller which guessed handles exist.
    """


class HandleLimitReached(HandleError):
    """A create met a cap under :attr:`HandlePolicy.REJECT`."""
