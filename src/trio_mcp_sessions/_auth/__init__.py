"""OAuth 2.1 resource server (MCP Authorization): verified tokens, challenges, metadata, scopes."""

from ._config import ResourceServer as ResourceServer
from ._introspection import IntrospectionVerifier as IntrospectionVerifier
from ._introspection import IntrospectionVerifierStatistics as IntrospectionVerifierStatistics
from ._jwt import DEFAULT_ALGORITHMS as DEFAULT_ALGORITHMS
from ._jwt import JwtVerifier as JwtVerifier
from ._jwt import JwtVerifierStatistics as JwtVerifierStatistics
from ._metadata import AuthorizationServerMetadata as AuthorizationServerMetadata
from ._metadata import discover_metadata as discover_metadata
from ._types import InvalidToken as InvalidToken
from ._types import RunnableVerifier as RunnableVerifier
from ._types import TokenVerifier as TokenVerifier
from ._types import VerifiedToken as VerifiedToken
from ._types import VerifierUnavailable as VerifierUnavailable
