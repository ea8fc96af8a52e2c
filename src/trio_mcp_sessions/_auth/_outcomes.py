"""What every verifier does around its own check: a checkpoint, counts, a safe log line."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

import trio

from ._http import fingerprint
from ._types import InvalidToken, VerifierUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._types import VerifiedToken

__all__ = ["VerifyOutcomes"]

logger = logging.getLogger("trio_mcp_sessions.auth")


@final
class VerifyOutcomes:
    """Verifications accepted, refused and left unfinished, counted where they happen."""

    __slots__ = ("invalid", "unavailable", "verified")

    def __init__(self) -> None:
        self.verified = self.invalid = self.unavailable = 0

    async def run(
        self, check: Callable[[str], Awaitable[VerifiedToken]], token: str
    ) -> VerifiedToken:
        """``await check(token)``, counted; a checkpoint even for a token refused at once.

        A refusal is logged with the token's fingerprint, never the token.
        """
        await trio.lowlevel.checkpoint()
        try:
            verified = await check(token)
        except InvalidToken as exc:
            self.invalid += 1
            logger.debug("token %s refused: %s", fingerprint(str(token)), exc.reason)
            raise
        except VerifierUnavailable:
            self.unavailable += 1
            raise
        self.verified += 1
        return verified
