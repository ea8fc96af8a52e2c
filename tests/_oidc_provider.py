"""A real OAuth 2.1 authorization server for the auth tests, and a headless browser for it.

:class:`OidcProvider` runs ``tests/oidc/provider.mjs`` (``oidc-provider``
9.13.3 on the pinned Node 22 from ``.tools/conformance``, see
``_conformance_tools``) on 127.0.0.1 and ends it by its PID.  Starting is
synchronous (a fraction of a second) so that a module-scoped fixture can share
one server between a module's tests; :func:`oidc_provider` is the async context
manager for a single trio test (it starts and stops in a worker thread, so the
loop never blocks).  :meth:`OidcProvider.restart` keeps the port, hence the
issuer, and with ``rotate_keys=True`` swaps the signing keys.

What it serves (see the script's header): public client ``interop`` (native,
loopback redirects to ``/callback`` on any port, refresh with
``offline_access``), confidential ``svc`` (``client_credentials``, and the
resource server's credentials for introspection), scopes ``notes:read
notes:write``, JWT access tokens (``typ: at+jwt``, ``aud`` = the resource
indicator) for every loopback indicator and opaque ones for indicators ending
in ``/opaque``, open dynamic registration, RFC 9207 ``iss`` on redirects.

:class:`Browser` is the user agent: one httpx client with a cookie jar that
walks ``/auth`` → ``/interaction/{uid}`` → login → consent → the redirect
with ``code``, ``state`` and ``iss``, plus the token endpoint calls a test
needs (PKCE code exchange with ``resource``, ``client_credentials``, refresh,
introspection, registration).

If Node tooling cannot be installed because there is no npm at all, the
fixtures skip with that reason; any other install failure fails the test, as
the conformance tests do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
import trio

from _conformance_tools import (
    INSTALL_DIR,
    TESTS_DIR,
    ConformanceTools,
    conformance_env,
    ensure_conformance_tools,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

PROVIDER_SCRIPT = TESTS_DIR / "oidc" / "provider.mjs"
READY_DEADLINE = 20.0
"""Seconds for the provider to print its ready line (it takes well under one)."""
STOP_DEADLINE = 5.0
"""Seconds between SIGTERM and SIGKILL."""
HTTP_TIMEOUT = 10.0
MAX_HOPS = 12
"""Redirects and forms one headless login may take (it needs five or six)."""

INTEROP_CLIENT = "interop"
"""The pre-registered public client (native, PKCE, refresh)."""
SVC_CLIENT = "svc"
SVC_SECRET = "svc-secret"
"""The confidential client: ``client_credentials`` and introspection."""
SCOPES = ("notes:read", "notes:write")
REDIRECT_URI = "http://127.0.0.1/callback"
"""``interop``'s registered redirect; any loopback port is accepted (RFC 8252 §7.3)."""


def provider_tools() -> ConformanceTools:
    """The installed toolchain; a skip only when it is absent and npm is too.

    npm is needed only to install: an earlier install is used without it.
    Any other install failure is an error, as for the conformance tests.
    """
    installed = (INSTALL_DIR / "node_modules" / "oidc-provider" / "package.json").is_file()
    if shutil.which("npm") is None and not installed:
        pytest.skip("npm is not on PATH: cannot install oidc-provider and Node 22")
    return ensure_conformance_tools()


@dataclass
class OidcProvider:
    """One ``provider.mjs`` process on 127.0.0.1; :meth:`stop` ends it by PID."""

    tools: ConformanceTools
    access_token_ttl: int = 300
    scopes: tuple[str, ...] = SCOPES
    port: int = 0
    jwks_path: Path = field(default_factory=lambda: _new_jwks_path())
    issuer: str = ""
    kids: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    _stderr: IO[bytes] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait (at most :data:`READY_DEADLINE`) for its ready line."""
        assert self.process is None, "already running"
        # Closed by stop(): the process writes to it for its whole life.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        command = [
            str(self.tools.node),
            str(PROVIDER_SCRIPT),
            str(self.tools.oidc_provider.parent),
            "--port",
            str(self.port),
            "--access-token-ttl",
            str(self.access_token_ttl),
            "--jwks",
            str(self.jwks_path),
            "--scopes",
            " ".join(self.scopes),
            "--svc-secret",
            SVC_SECRET,
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=conformance_env(self.tools),
        )
        try:
            ready = self._read_ready_line()
        except BaseException:
            self.stop()
            raise
        self.issuer = ready["issuer"]
        self.port = urlsplit(self.issuer).port or 0
        self.kids = list(ready["kids"])
        return self

    def _read_ready_line(self) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        buffer = b""
        until = time.monotonic() + READY_DEADLINE
        while b"\n" not in buffer:
            remaining = until - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"oidc-provider printed no ready line within {READY_DEADLINE:.0f}s"
                    f"{self._stderr_tail()}"
                )
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                code = self.process.wait(timeout=STOP_DEADLINE)
                raise RuntimeError(
                    f"oidc-provider exited ({code}) before it was ready{self._stderr_tail()}"
                )
            buffer += chunk
        line = buffer.split(b"\n", 1)[0]
        ready = json.loads(line)
        if not (isinstance(ready, dict) and ready.get("ready") is True):
            raise RuntimeError(f"oidc-provider: unexpected first line {line!r}")
        return ready

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-4000:].decode("utf-8", "replace")
        return f"\n--- stderr ---\n{text}" if text else ""

    def stop(self) -> int | None:
        """SIGTERM by PID, SIGKILL after :data:`STOP_DEADLINE`; the exit code."""
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    code = process.wait(timeout=STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    process.kill()
                    code = process.wait(timeout=STOP_DEADLINE)
            else:
                code = process.returncode
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return code

    def restart(self, *, rotate_keys: bool = False) -> Self:
        """Stop and start again on the same port (same issuer); new keys if *rotate_keys*.

        The provider's state (grants, clients registered by DCR, refresh tokens)
        lives in memory and does not survive; only the keys may.
        """
        old_kids = list(self.kids)
        self.stop()
        if rotate_keys:
            self.jwks_path.unlink(missing_ok=True)
        self.start()
        assert rotate_keys != (self.kids == old_kids), (old_kids, self.kids)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.jwks_path.unlink(missing_ok=True)

    # -- endpoints (oidc-provider's default routes) ----------------------------------------

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def registration_endpoint(self) -> str:
        return f"{self.issuer}/reg"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def metadata_url(self) -> str:
        """RFC 8414 metadata (oidc-provider also serves it at ``openid-configuration``)."""
        return f"{self.issuer}/.well-known/oauth-authorization-server"


def _new_jwks_path() -> Path:
    """A path for the key set that does not exist yet (the script creates the file)."""
    handle, name = tempfile.mkstemp(prefix="oidc-jwks-", suffix=".json")
    os.close(handle)
    path = Path(name)
    path.unlink()
    return path


@asynccontextmanager
async def oidc_provider(
    tools: ConformanceTools, *, access_token_ttl: int = 300, scopes: tuple[str, ...] = SCOPES
) -> AsyncIterator[OidcProvider]:
    """A provider for one trio test, started and stopped off the event loop."""
    provider = OidcProvider(tools, access_token_ttl=access_token_ttl, scopes=scopes)
    await trio.to_thread.run_sync(provider.start)
    try:
        yield provider
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(provider.__exit__, None, None, None)


# -- the headless user agent ----------------------------------------------------------------


class LoginError(Exception):
    """The authorization server refused, or the walk did not end at the redirect URI."""


@dataclass(frozen=True)
class Callback:
    """What the authorization server sent to the redirect URI."""

    url: str
    code: str | None
    state: str | None
    iss: str | None
    error: str | None
    error_description: str | None


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


_PROMPT = re.compile(r'name="prompt" value="(login|consent)"')
_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


class Browser:
    """A user agent with a cookie jar: logs *user* in and consents, headlessly.

    One instance is one browser profile: the provider's session cookie makes a
    second authorization (a step-up) skip the login and ask only for consent.
    """

    def __init__(self, provider: OidcProvider, user: str = "alice") -> None:
        self.provider = provider
        self.user = user
        self.http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        self.prompts: list[str] = []
        """Every interaction prompt answered, in order (``login``, ``consent``)."""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def authorize(self, authorization_url: str) -> Callback:
        """Follow *authorization_url* through login and consent to the redirect URI.

        Every hop stays on the issuer's origin until the redirect that leaves it,
        which is the callback (never fetched: nothing listens there).
        """
        issuer_origin = _origin(self.provider.issuer)
        url = authorization_url
        response = await self.http.get(url)
        for _ in range(MAX_HOPS):
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                if _origin(url) != issuer_origin:
                    return _callback(url)
                response = await self.http.get(url)
                continue
            if response.status_code == 200 and "/interaction/" in urlsplit(url).path:
                response = await self._answer(url, response.text)
                continue
            raise LoginError(f"{response.status_code} at {url}: {response.text[:2000]}")
        raise LoginError(f"no redirect to the client after {MAX_HOPS} hops (last: {url})")

    async def _answer(self, url: str, page: str) -> httpx.Response:
        prompt = _PROMPT.search(page)
        action = _ACTION.search(page)
        if prompt is None or action is None:
            raise LoginError(f"no login or consent form at {url}: {page[:2000]}")
        name = prompt.group(1)
        self.prompts.append(name)
        form = {"prompt": name}
        if name == "login":
            form |= {"login": self.user, "password": "any"}
        return await self.http.post(urljoin(url, unescape(action.group(1))), data=form)

    # -- the authorization code grant, by hand ---------------------------------------------

    def authorization_url(
        self,
        *,
        resource: str | None,
        scope: str,
        pkce: Pkce,
        state: str,
        client_id: str = INTEROP_CLIENT,
        redirect_uri: str = REDIRECT_URI,
        prompt: str | None = None,
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        }
        if resource is not None:
            params["resource"] = resource
        if prompt is not None:
            params["prompt"] = prompt
        return f"{self.provider.authorization_endpoint}?{urlencode(params)}"

    async def authorization_code(
        self,
        *,
        resource: str | None,
        scope: str,
        client_id: str = INTEROP_CLIENT,
        redirect_uri: str = REDIRECT_URI,
    ) -> dict[str, Any]:
        """The whole grant: authorize with PKCE and *resource*, then exchange the code.

        ``offline_access`` in *scope* adds ``prompt=consent`` (oidc-provider
        drops the scope otherwise) and so yields a refresh token.
        """
        pkce = Pkce.new()
        state = secrets.token_urlsafe(16)
        prompt = "consent" if "offline_access" in scope.split() else None
        callback = await self.authorize(
            self.authorization_url(
                resource=resource,
                scope=scope,
                pkce=pkce,
                state=state,
                client_id=client_id,
                redirect_uri=redirect_uri,
                prompt=prompt,
            )
        )
        if callback.error is not None or callback.code is None:
            raise LoginError(f"authorization refused: {callback}")
        if callback.state != state:
            raise LoginError(f"state mismatch: {callback}")
        if callback.iss != self.provider.issuer:
            raise LoginError(f"iss mismatch: {callback}")
        return await self.exchange_code(
            callback.code,
            pkce.verifier,
            resource=resource,
            client_id=client_id,
            redirect_uri=redirect_uri,
        )

    async def exchange_code(
        self,
        code: str,
        verifier: str,
        *,
        resource: str | None,
        client_id: str = INTEROP_CLIENT,
        redirect_uri: str = REDIRECT_URI,
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
        }
        if resource is not None:
            form["resource"] = resource
        return await self._token(form)

    async def refresh(
        self, refresh_token: str, *, resource: str | None = None, client_id: str = INTEROP_CLIENT
    ) -> dict[str, Any]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        form["client_id"] = client_id
        if resource is not None:
            form["resource"] = resource
        return await self._token(form)

    async def client_credentials(
        self,
        *,
        resource: str,
        scope: str = " ".join(SCOPES),
        client_id: str = SVC_CLIENT,
        client_secret: str = SVC_SECRET,
    ) -> dict[str, Any]:
        """A token for the confidential client itself (``sub`` = its client id)."""
        form = {"grant_type": "client_credentials", "resource": resource, "scope": scope}
        return await self._token(form, auth=(client_id, client_secret))

    async def introspect(
        self, token: str, *, client_id: str = SVC_CLIENT, client_secret: str = SVC_SECRET
    ) -> dict[str, Any]:
        """RFC 7662, authenticated as the resource server's client."""
        response = await self.http.post(
            self.provider.introspection_endpoint,
            data={"token": token},
            auth=(client_id, client_secret),
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def register(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """RFC 7591 dynamic registration (open on this server)."""
        response = await self.http.post(self.provider.registration_endpoint, json=metadata)
        if response.status_code != 201:
            raise LoginError(f"registration refused: {response.status_code} {response.text}")
        body: dict[str, Any] = response.json()
        return body

    async def _token(
        self, form: dict[str, str], *, auth: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        response = await self.http.post(
            self.provider.token_endpoint,
            data=form,
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
        )
        if response.status_code != 200:
            raise LoginError(f"token endpoint: {response.status_code} {response.text}")
        body: dict[str, Any] = response.json()
        return body


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _callback(url: str) -> Callback:
    query = parse_qs(urlsplit(url).query)

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    return Callback(
        url=url,
        code=one("code"),
        state=one("state"),
        iss=one("iss"),
        error=one("error"),
        error_description=one("error_description"),
    )
