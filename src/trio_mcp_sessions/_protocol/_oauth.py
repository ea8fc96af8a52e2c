"""OAuth's grammar that both the server API and the resource server check against."""

from __future__ import annotations

import re
from typing import Final

#: RFC 6749 §3.3 ``scope-token``: printable ASCII but space, ``"`` and ``\``.
SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
