"""Interop: both official clients authorize against a real AS and our resource server.

The authorization server is ``oidc-provider`` on loopback (``_oidc_provider``,
one per module); our server is a real Hypercorn serving
``StreamableHTTPApp(server, auth=ResourceServer(...))`` whose ``resource`` is
the endpoint's own URL (the port is bound first, so the URL is known before the
app is built).  The clients are the ``mcp`` 2.3.0 Python SDK's
``OAuthClientProvider`` and the TypeScript SDK 1.32.2's ``authProvider``
(``tests/ts_client/oauth_client.mjs``); their redirect/callback hooks drive the
headless login of ``_oidc_provider.Browser`` (the TS script carries its own),
so between discovery and the last call there is no request the SDK did not
make itself:

    initialize → 401 (scope = base) → PRM → AS metadata → authorization code
    with PKCE and ``resource`` → token → initialize → a call → another call →
    403 insufficient_scope → step-up (consent only: the AS session remains)
    → token → the same call again, on the same ``Mcp-Session-Id``.

Step-up runs with the pre-registered client ``interop``: a client registered by
DCR with the first challenged scope is limited to it by oidc-provider, so its
step-up fails with ``invalid_scope`` (the authorization reference, section 5);
DCR has its own test, which pins that down too.

Tokens are checked by our own :class:`~trio_mcp_sessions.JwtVerifier` (keys
found through the provider's metadata, fetched by the app's lifespan task),
which :class:`RecordingVerifier` only watches.
"""

from __future__ import annotations

import json
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import httpx
import httpx2
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from _conformance_tools import TESTS_DIR, ConformanceTools, run_node_json
from _harness import manager_of, wait_until
from _oidc_provider import (
    INTEROP_CLIENT,
    SVC_CLIENT,
    SVC_SECRET,
    Browser,
    Callback,
    OidcProvider,
    oidc_provider,
    provider_tools,
)
from trio_mcp_sessions import (
    Context,
    JwtVerifier,
    McpServer,
    ResourceServer,
    StreamableHTTPApp,
    VerifiedToken,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from mcp.client._transport import TransportStreams

    from conftest import TracebackRecorder

# The SDK's HTTP stack abandons the async generators of the SSE responses it
# stops reading; under trio that is a ResourceWarning from the client library.
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpx2\.:ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpcore2\.:ResourceWarning"),
]

TS_SCRIPT = TESTS_DIR / "ts_client" / "oauth_client.mjs"
TIMEOUT = 30.0
"""Seconds for one whole client run (each takes about one)."""
BASE = "notes:read"
WRITE = "notes:write"
CALLBACK = "http://127.0.0.1:33418/callback"
"""The clients' redirect URI: never fetched (the headless login stops at it)."""


# -- the resource server -------------------------------------------------------------------


class RecordingVerifier(JwtVerifier):
    """Our :class:`JwtVerifier`, keeping every token it accepted (to see who called)."""

    def __init__(self, issuer: str, audience: str) -> None:
        super().__init__(issuer, audience)
        self.verified: list[VerifiedToken] = []

    async def verify(self, token: str) -> VerifiedToken:
        verified = await super().verify(token)
        self.verified.append(verified)
        return verified


def make_server() -> McpServer:
    server = McpServer("protected-interop", "1.0.0")

    @server.tool()
    async def whoami(ctx: Context) -> str:
        """The caller and the session, as the server saw them."""
        token = ctx.token
        assert token is not None
        return json.dumps(
            {
                "sub": token.subject,
                "client_id": token.client_id,
                "scopes": sorted(token.scopes),
                "session": ctx.session_id,
                "principal": ctx.principal,
            }
        )

    @server.tool(scopes={WRITE})
    async def write_note(text: str, ctx: Context) -> str:
        """Needs notes:write on top of the base scope."""
        token = ctx.token
        assert token is not None
        return json.dumps({"wrote": text, "session": ctx.session_id, "principal": ctx.principal})

    return server


@dataclass
class Protected:
    url: str
    app: StreamableHTTPApp
    verifier: RecordingVerifier


async def serve_protected(nursery: trio.Nursery, provider: OidcProvider) -> Protected:
    """Our server on 127.0.0.1, its ``resource`` the URL it is reached at."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    verifier = RecordingVerifier(provider.issuer, url)
    auth = ResourceServer(
        resource=url, authorization_servers=[provider.issuer], verifier=verifier, scopes={BASE}
    )
    app = StreamableHTTPApp(make_server(), auth=auth)
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns the socket from here
    config.accesslog = None
    config.graceful_timeout = 0.5
    await nursery.start(
        partial(hypercorn_serve, app, config, shutdown_trigger=trio.sleep_forever)  # type: ignore[arg-type]
    )
    return Protected(url, app, verifier)


@pytest.fixture(scope="module")
def tools() -> ConformanceTools:
    return provider_tools()


@pytest.fixture(scope="module")
def provider(tools: ConformanceTools) -> Iterator[OidcProvider]:
    with OidcProvider(tools) as running:
        yield running


# -- the Python SDK's OAuthClientProvider, driven headless ---------------------------------


@dataclass
class MemoryStorage:
    """The SDK's TokenStorage, in memory; optionally holding a pre-registered client."""

    client_info: OAuthClientInformationFull | None = None
    tokens: OAuthToken | None = None
    saved_tokens: list[OAuthToken] = field(default_factory=list)

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.saved_tokens.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class HeadlessUser:
    """The SDK's redirect and callback handlers: the browser logs in and consents."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.authorization_urls: list[str] = []
        self.callbacks: list[Callback] = []

    async def redirect(self, authorization_url: str) -> None:
        self.authorization_urls.append(authorization_url)
        self.callbacks.append(await self.browser.authorize(authorization_url))

    async def callback(self) -> AuthorizationCodeResult:
        last = self.callbacks[-1]
        if last.code is None:
            raise RuntimeError(f"the authorization server refused: {last.error}")
        return AuthorizationCodeResult(code=last.code, state=last.state, iss=last.iss)


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    session: str | None
    challenge: str | None


@dataclass
class Wire:
    """Every HTTP exchange the SDK's client made (MCP, metadata, token endpoint)."""

    exchanges: list[Exchange] = field(default_factory=list)

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        self.exchanges.append(
            Exchange(
                request.method,
                f"{request.url.host}:{request.url.port}{request.url.path}",
                response.status_code,
                request.headers.get("mcp-session-id"),
                response.headers.get("www-authenticate"),
            )
        )

    def at(self, path_suffix: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.path.endswith(path_suffix)]


def client_metadata() -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="mcp-python-interop",
        redirect_uris=[CALLBACK],  # type: ignore[list-item]  # pydantic parses the str
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        application_type="native",
    )


def pre_registered() -> OAuthClientInformationFull:
    return OAuthClientInformationFull(
        client_id=INTEROP_CLIENT,
        redirect_uris=[CALLBACK],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        application_type="native",
    )


@asynccontextmanager
async def authorized_transport(
    url: str, auth: OAuthClientProvider, wire: Wire
) -> AsyncIterator[TransportStreams]:
    """The SDK's Streamable HTTP transport on an httpx2 client that carries *auth*."""
    async with (
        httpx2.AsyncClient(
            auth=auth,
            timeout=httpx2.Timeout(10.0, read=60.0),
            event_hooks={"response": [wire.on_response]},
        ) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


def sdk_client(
    url: str, auth: OAuthClientProvider, wire: Wire, mode: Literal["legacy", "auto"] = "legacy"
) -> Client:
    """``legacy``: the session era (initialize, one ``Mcp-Session-Id``, DELETE);
    ``auto``: the SDK's default, which speaks 2026-07-28 with us (no session)."""
    return Client(authorized_transport(url, auth, wire), mode=mode, read_timeout_seconds=10.0)


def only_text(result: Any) -> str:
    (content,) = result.content
    text = content.text
    assert isinstance(text, str)
    return text


async def test_python_sdk_client_authorizes_and_steps_up_on_one_session(
    provider: OidcProvider, nursery: trio.Nursery, tracebacks: TracebackRecorder
) -> None:
    protected = await serve_protected(nursery, provider)
    storage = MemoryStorage(client_info=pre_registered())
    wire = Wire()
    async with Browser(provider) as browser:
        user = HeadlessUser(browser)
        auth = OAuthClientProvider(
            protected.url,
            client_metadata(),
            storage,
            redirect_handler=user.redirect,
            callback_handler=user.callback,
        )
        with trio.fail_after(TIMEOUT):
            async with sdk_client(protected.url, auth, wire) as client:
                first = json.loads(only_text(await client.call_tool("whoami", {})))
                wrote = json.loads(only_text(await client.call_tool("write_note", {"text": "x"})))
                after = json.loads(only_text(await client.call_tool("whoami", {})))

    # -- who called, on which session
    assert first["sub"] == "alice"
    assert first["client_id"] == INTEROP_CLIENT
    assert first["scopes"] == [BASE]
    assert isinstance(first["session"], str)
    assert wrote == {"wrote": "x", "session": first["session"], "principal": first["principal"]}
    assert after["session"] == first["session"]
    assert after["principal"] == first["principal"]
    assert after["scopes"] == [BASE, WRITE]

    # -- the user: logged in once, consented twice; each request named the resource
    assert browser.prompts == ["login", "consent", "consent"]
    assert len(user.authorization_urls) == 2
    first_scope = httpx.URL(user.authorization_urls[0]).params["scope"].split()
    second_scope = httpx.URL(user.authorization_urls[1]).params["scope"].split()
    assert httpx.URL(user.authorization_urls[0]).params["resource"] == protected.url
    assert httpx.URL(user.authorization_urls[1]).params["resource"] == protected.url
    assert BASE in first_scope
    assert WRITE not in first_scope
    assert {BASE, WRITE} <= set(second_scope)  # the union (SEP-2350)
    assert all(c.iss == provider.issuer for c in user.callbacks)

    # -- the wire: discovery once, one 401, one 403, two token grants, one session
    mcp = [e for e in wire.exchanges if e.path.endswith("/mcp") and "/.well-known/" not in e.path]
    unauthorized = [e for e in mcp if e.status == 401]
    assert len(unauthorized) == 1
    assert unauthorized[0].challenge is not None
    assert "error=" not in unauthorized[0].challenge  # no credentials: no error (RFC 6750)
    assert f'scope="{BASE}"' in unauthorized[0].challenge
    forbidden = [e for e in mcp if e.status == 403]
    assert len(forbidden) == 1
    assert forbidden[0].challenge is not None
    assert 'error="insufficient_scope"' in forbidden[0].challenge
    assert f'scope="{BASE} {WRITE}"' in forbidden[0].challenge
    assert forbidden[0].session == first["session"]
    assert [e.status for e in wire.at("/.well-known/oauth-protected-resource/mcp")] == [200]
    assert [e.status for e in wire.at("/.well-known/oauth-authorization-server")] == [200]
    assert [e.status for e in wire.at("/token")] == [200, 200]
    sessions = {e.session for e in mcp if e.session is not None}
    assert sessions == {first["session"]}
    assert [e.status for e in mcp if e.method == "DELETE"] == [200]
    assert all(e.status < 500 for e in wire.exchanges), wire.exchanges

    # -- the server: one session, created and deleted; every verified token was alice's
    manager = manager_of(protected.app)
    await wait_until(lambda: manager.statistics().live_sessions == 0, timeout=5.0)
    stats = manager.statistics()
    assert stats.created == 1
    assert stats.closed_by_reason == {"deleted": 1}
    assert {(v.subject, v.client_id) for v in protected.verifier.verified} == {
        ("alice", INTEROP_CLIENT)
    }
    verifier_stats = protected.verifier.statistics()
    assert verifier_stats.jwks_fetches == 1  # discovery and the key set, once for the whole flow
    assert verifier_stats.jwks_fetch_failures == 0
    assert verifier_stats.verified == len(protected.verifier.verified)
    assert storage.tokens is not None
    assert storage.tokens.refresh_token is not None  # offline_access was asked for (SEP-2207)
    assert not tracebacks.records, tracebacks.describe()


async def test_python_sdk_client_registers_by_dcr(
    provider: OidcProvider, nursery: trio.Nursery, tracebacks: TracebackRecorder
) -> None:
    """DCR works; its client is then held to its first scope, so step-up is refused."""
    protected = await serve_protected(nursery, provider)
    storage = MemoryStorage()
    wire = Wire()
    async with Browser(provider, user="bob") as browser:
        user = HeadlessUser(browser)
        auth = OAuthClientProvider(
            protected.url,
            client_metadata(),
            storage,
            redirect_handler=user.redirect,
            callback_handler=user.callback,
        )
        me: dict[str, Any] = {}
        with (
            trio.fail_after(TIMEOUT),
            # The step-up's refusal ends the SDK's transport task, so it surfaces
            # from the client's exit (in a group), not from the call.
            pytest.RaisesGroup(
                pytest.RaisesExc(RuntimeError, match="refused: invalid_scope"),
                allow_unwrapped=True,
                flatten_subgroups=True,
            ),
        ):
            async with sdk_client(protected.url, auth, wire) as client:
                me |= json.loads(only_text(await client.call_tool("whoami", {})))
                await client.call_tool("write_note", {"text": "x"})

    assert storage.client_info is not None
    registered = storage.client_info.client_id
    assert registered != INTEROP_CLIENT
    assert [e.status for e in wire.at("/reg")] == [201]
    assert me["sub"] == "bob"
    assert me["client_id"] == registered
    assert storage.client_info.scope is not None
    assert WRITE not in storage.client_info.scope.split()
    assert [c.error for c in user.callbacks] == [None, "invalid_scope"]
    ours = [r for r in tracebacks.records if not r.name.startswith("mcp.")]
    assert not ours, tracebacks.describe()  # the SDK logs its own failed flow


async def test_python_sdk_client_steps_up_at_2026_07_28(
    provider: OidcProvider, nursery: trio.Nursery, tracebacks: TracebackRecorder
) -> None:
    """The SDK's default mode speaks 2026-07-28 with us: every request is checked, no session."""
    protected = await serve_protected(nursery, provider)
    wire = Wire()
    async with Browser(provider) as browser:
        user = HeadlessUser(browser)
        auth = OAuthClientProvider(
            protected.url,
            client_metadata(),
            MemoryStorage(client_info=pre_registered()),
            redirect_handler=user.redirect,
            callback_handler=user.callback,
        )
        with trio.fail_after(TIMEOUT):
            async with sdk_client(protected.url, auth, wire, mode="auto") as client:
                first = json.loads(only_text(await client.call_tool("whoami", {})))
                wrote = json.loads(only_text(await client.call_tool("write_note", {"text": "y"})))
                assert client.protocol_version == "2026-07-28"

    assert first["session"] is None
    assert (first["sub"], first["scopes"]) == ("alice", [BASE])
    assert wrote == {"wrote": "y", "session": None, "principal": first["principal"]}
    assert browser.prompts == ["login", "consent", "consent"]
    mcp = [e for e in wire.exchanges if e.path.endswith("/mcp") and "/.well-known/" not in e.path]
    assert [e.status for e in mcp if e.status >= 400] == [401, 403]
    assert all(e.session is None for e in mcp)
    assert [e.status for e in wire.at("/token")] == [200, 200]
    assert manager_of(protected.app).statistics().created == 0
    assert not tracebacks.records, tracebacks.describe()


async def test_python_sdk_client_refreshes_and_keeps_the_session(
    tools: ConformanceTools, nursery: trio.Nursery, tracebacks: TracebackRecorder
) -> None:
    """Short-lived tokens: the SDK refreshes, and the session is still the caller's.

    ``exp`` is whole seconds (``iat`` + TTL, ``iat`` rounded down), so a token
    of TTL 2 is good for 1 to 2 s, while the SDK counts 2 s from receipt: each
    token is used within milliseconds of arriving, and the sleep outlasts both.
    """
    async with oidc_provider(tools, access_token_ttl=2) as short, Browser(short) as browser:
        protected = await serve_protected(nursery, short)
        storage = MemoryStorage(client_info=pre_registered())
        wire = Wire()
        user = HeadlessUser(browser)
        auth = OAuthClientProvider(
            protected.url,
            client_metadata(),
            storage,
            redirect_handler=user.redirect,
            callback_handler=user.callback,
        )
        with trio.fail_after(TIMEOUT):
            async with sdk_client(protected.url, auth, wire) as client:
                first = json.loads(only_text(await client.call_tool("whoami", {})))
                # Real time: the AS stamps exp with its own clock.
                await trio.sleep(2.5)
                again = json.loads(only_text(await client.call_tool("whoami", {})))

    assert again["session"] == first["session"]
    assert again["principal"] == first["principal"]
    assert browser.prompts == ["login", "consent"]  # one authorization, then refreshes
    assert len(storage.saved_tokens) >= 2
    first_token, *refreshed = storage.saved_tokens
    assert all(t.access_token != first_token.access_token for t in refreshed)
    assert [e.status for e in wire.at("/token")] == [200] * len(storage.saved_tokens)
    jtis = {v.token_id for v in protected.verifier.verified}
    assert len(jtis) >= 2  # the server saw the new token, on the same session
    assert manager_of(protected.app).statistics().created == 1
    assert not tracebacks.records, tracebacks.describe()


async def test_python_sdk_client_credentials(
    provider: OidcProvider, nursery: trio.Nursery, tracebacks: TracebackRecorder
) -> None:
    """A machine client: ``client_credentials`` with the resource, no user, no browser."""
    protected = await serve_protected(nursery, provider)
    storage = MemoryStorage()
    wire = Wire()
    auth = ClientCredentialsOAuthProvider(
        protected.url,
        storage,
        client_id=SVC_CLIENT,
        client_secret=SVC_SECRET,
        scope=f"{BASE} {WRITE}",
        issuer=provider.issuer,
    )
    with trio.fail_after(TIMEOUT):
        async with sdk_client(protected.url, auth, wire) as client:
            me = json.loads(only_text(await client.call_tool("whoami", {})))
            wrote = json.loads(only_text(await client.call_tool("write_note", {"text": "z"})))
    assert (me["sub"], me["client_id"]) == (SVC_CLIENT, SVC_CLIENT)
    assert me["scopes"] == [BASE]  # the challenge's scope, not the one configured
    assert wrote["session"] == me["session"]
    assert wrote["principal"] == me["principal"]
    # The 403 made it ask again, with the union.
    assert [e.status for e in wire.at("/token")] == [200, 200]
    assert not tracebacks.records, tracebacks.describe()


# -- the TypeScript SDK's authProvider -----------------------------------------------------


async def run_ts_client(tools: ConformanceTools, url: str, *, registration: str) -> dict[str, Any]:
    args = (str(tools.ts_sdk), url, CALLBACK, registration)
    return await run_node_json(tools, TS_SCRIPT, *args, timeout=TIMEOUT * 2)


async def test_typescript_sdk_client_authorizes_and_steps_up_on_one_session(
    provider: OidcProvider,
    tools: ConformanceTools,
    nursery: trio.Nursery,
    tracebacks: TracebackRecorder,
) -> None:
    protected = await serve_protected(nursery, provider)
    out = await run_ts_client(tools, protected.url, registration="interop")

    first = json.loads(out["whoami"])
    wrote = json.loads(out["write"])
    after = json.loads(out["after"])
    assert first["sub"] == "alice"
    assert first["client_id"] == INTEROP_CLIENT
    assert first["scopes"] == [BASE]
    assert wrote == {"wrote": "x", "session": first["session"], "principal": first["principal"]}
    assert after["session"] == first["session"]
    assert after["scopes"] == [BASE, WRITE]
    assert out["sessionId"] == first["session"]

    assert out["prompts"] == ["login", "consent", "consent"]
    (first_auth, second_auth) = [httpx.URL(u).params for u in out["authorizationUrls"]]
    assert first_auth["resource"] == protected.url
    assert second_auth["resource"] == protected.url
    assert first_auth["scope"].split() == [BASE]
    assert set(second_auth["scope"].split()) == {BASE, WRITE}
    assert first_auth["code_challenge_method"] == "S256"
    assert out["issOnRedirects"] == [provider.issuer, provider.issuer]

    http = out["http"]
    mcp = [e for e in http if e["url"] == protected.url]
    assert [e["status"] for e in mcp if e["status"] in (401, 403)] == [401, 403]
    (unauthorized,) = [e for e in mcp if e["status"] == 401]
    assert "error=" not in unauthorized["challenge"]
    (forbidden,) = [e for e in mcp if e["status"] == 403]
    assert 'error="insufficient_scope"' in forbidden["challenge"]
    assert forbidden["session"] == first["session"]
    assert [e["status"] for e in http if e["url"].endswith("/token")] == [200, 200]
    assert {e["session"] for e in mcp if e["session"]} == {first["session"]}
    assert [e["status"] for e in mcp if e["method"] == "DELETE"] == [200]
    assert all(e["status"] < 500 for e in http), http

    manager = manager_of(protected.app)
    await wait_until(lambda: manager.statistics().live_sessions == 0, timeout=5.0)
    assert manager.statistics().created == 1
    assert not tracebacks.records, tracebacks.describe()


async def test_typescript_sdk_client_registers_by_dcr(
    provider: OidcProvider,
    tools: ConformanceTools,
    nursery: trio.Nursery,
    tracebacks: TracebackRecorder,
) -> None:
    protected = await serve_protected(nursery, provider)
    out = await run_ts_client(tools, protected.url, registration="dcr")
    me = json.loads(out["whoami"])
    assert out["registered"]["client_id"] == me["client_id"] != INTEROP_CLIENT
    assert out["registered"]["scope"].split() == [BASE]
    assert me["sub"] == "alice"
    assert [e["status"] for e in out["http"] if e["url"].endswith("/reg")] == [201]
    # The gotcha of the reference, section 5: the DCR client cannot step up.
    assert out["writeError"] is not None
    assert "invalid_scope" in out["writeError"]
    assert not tracebacks.records, tracebacks.describe()
