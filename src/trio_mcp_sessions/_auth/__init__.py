"""OAuth 2.1 resource server (MCP Authorization): verified tokens, challenges, metadata, scopes."""

from ._config import ResourceServer as ResourceServer
from ._types import InvalidToken as InvalidToken
from ._types import RunnableVerifier as RunnableVerifier
from ._types import TokenVerifier as TokenVerifier
from ._types import VerifiedToken as VerifiedToken
from ._types import VerifierUnavailable as VerifierUnavailable
