"""The resource server over real HTTP (Hypercorn on 127.0.0.1): metadata, challenges, scopes.

The verifier here is a table of tokens (the JWT and introspection verifiers
have tests of their own, and the end-to-end ones run against a real
authorization server): what is under test is what the transport does with
a verifier's answer, exactly as a client sees it.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from _harness import SseReader, messages
from conftest import INIT_HEADERS, initialize_body
from trio_mcp_sessions import (
    CallLimits,
    Context,
    InMemorySessionStore,
    InvalidToken,
    McpServer,
    RateLimit,
    ResourceServer,
    StreamableHTTPApp,
    VerifiedToken,
    VerifierUnavailable,
)
from trio_mcp_sessions.testing import open_test_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")

ISSUER = "https://as.example"
MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass(frozen=True)
class TableStatistics:
    calls: int
    cached_tokens: int


class TableVerifier:
    """Tokens it knows verify as their entry; others are invalid; ``down`` is an outage."""

    def __init__(self) -> None:
        self.tokens: dict[str, VerifiedToken] = {}
        self.calls = 0
        self.down = False

    def add(
        self, token: str, subject: str, *scopes: str, client: str = "c1", ttl: float | None = 300
    ) -> str:
        self.tokens[token] = VerifiedToken(
            ISSUER,
            subject,
            client,
            frozenset(scopes),
            ("http://127.0.0.1/mcp",),
            None if ttl is None else time.time() + ttl,
        )
        return token

    def statistics(self) -> TableStatistics:
        return TableStatistics(self.calls, len(self.tokens))

    async def verify(self, token: str) -> VerifiedToken:
        await trio.lowlevel.checkpoint()
        self.calls += 1
        if self.down:
            raise VerifierUnavailable("the authorization server is unreachable", retry_after=7)
        try:
            return self.tokens[token]
        except KeyError:
            raise InvalidToken("unknown token") from None


def make_server() -> McpServer:
    server = McpServer("protected", "1.0.0")

    @server.tool()
    async def whoami(ctx: Context) -> dict[str, Any]:
        """Who the token says is calling."""
        token = ctx.token
        assert token is not None
        return {"sub": token.subject, "scopes": sorted(token.scopes), "principal": ctx.principal}

    @server.tool(scopes={"notes:write"})
    async def write_note(text: str) -> str:
        """Needs notes:write."""
        return f"wrote {text}"

    @server.tool(scopes={"notes:write", "notes:admin"})
    async def purge() -> str:
        """Needs two scopes."""
        return "purged"

    @server.resource("mem://a", name="a")
    def a() -> str:
        return "a"

    return server


class Client:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url
        self.origin = url.rsplit("/", 1)[0]

    async def post(self, body: Any, token: str | None = None, **headers: str) -> httpx.Response:
        sent = dict(INIT_HEADERS, **{k.replace("_", "-"): v for k, v in headers.items()})
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        return await self.http.post(self.url, content=json.dumps(body), headers=sent)

    async def initialize(self, token: str) -> str:
        r = await self.post(initialize_body(), token)
        assert r.status_code == 200, r.text
        session = r.headers["mcp-session-id"]
        done = await self.post(
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            token,
            mcp_session_id=session,
            mcp_protocol_version="2025-11-25",
        )
        assert done.status_code == 202
        return session

    async def call(self, token: str | None, session: str, name: str, **arguments: Any) -> Any:
        body = {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
        return await self.post(
            body, token, mcp_session_id=session, mcp_protocol_version="2025-11-25"
        )

    async def modern(self, token: str | None, method: str, params: dict[str, Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": 9, "method": method, "params": {**params, "_meta": META}}
        extra = {"mcp_protocol_version": MODERN, "mcp_method": method}
        if method == "tools/call":
            extra["mcp_name"] = params["name"]
        return await self.post(body, token, **extra)


def resource_server(verifier: TableVerifier, url: str = "http://127.0.0.1/mcp", **options: Any):  # type: ignore[no-untyped-def]
    return ResourceServer(url, [ISSUER], verifier, scopes={"mcp"}, **options)


async def start(
    start_server: StartServer, http: httpx.AsyncClient, **options: Any
) -> tuple[Client, TableVerifier, StreamableHTTPApp]:
    verifier = TableVerifier()
    auth_options = options.pop("auth_options", {})
    app = StreamableHTTPApp(
        make_server(), auth=resource_server(verifier, **auth_options), **options
    )
    return Client(http, await start_server(app)), verifier, app


def challenge(response: httpx.Response) -> dict[str, str]:
    value = response.headers["www-authenticate"]
    scheme, _, rest = value.partition(" ")
    assert scheme == "Bearer", value
    params = {}
    for part in rest.split(", "):
        key, _, quoted = part.partition("=")
        assert quoted.startswith('"'), value
        assert quoted.endswith('"'), value
        params[key] = quoted[1:-1]
    return params


METADATA_URL = "http://127.0.0.1/.well-known/oauth-protected-resource/mcp"

# -- Protected Resource Metadata ---------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]
)
async def test_the_metadata_at_both_well_known_paths(
    start_server: StartServer, http: httpx.AsyncClient, path: str
) -> None:
    client, verifier, _ = await start(start_server, http)
    r = await http.get(client.origin + path, headers={"origin": "https://elsewhere.example"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cache-control"] == "public, max-age=3600"
    assert r.json() == {
        "resource": "http://127.0.0.1/mcp",  # the configured URL, not the Host header
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["mcp", "notes:admin", "notes:write"],
    }
    head = await http.head(client.origin + path)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(r.content)
    options = await http.options(client.origin + path)
    assert options.status_code == 204
    assert "GET" in options.headers["access-control-allow-methods"]
    post = await http.post(client.origin + path, content=b"{}")
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD, OPTIONS"
    assert verifier.calls == 0


# -- the challenges ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_no_credentials_get_401_without_an_error(
    start_server: StartServer, http: httpx.AsyncClient, method: str
) -> None:
    client, verifier, app = await start(start_server, http)
    r = await http.request(
        method,
        client.url,
        content=json.dumps(initialize_body()) if method == "POST" else None,
        headers={**INIT_HEADERS, "mcp-session-id": "x"} if method != "POST" else INIT_HEADERS,
    )
    assert r.status_code == 401
    assert challenge(r) == {"scope": "mcp", "resource_metadata": METADATA_URL}
    body = r.json()
    assert body["error"]["data"] == {"resource_metadata": METADATA_URL, "scope": "mcp"}
    assert verifier.calls == 0
    assert app.manager.statistics().live_sessions == 0  # type: ignore[attr-defined]
    stats = app.statistics().auth
    assert stats is not None
    assert stats.missing == 1


async def test_another_scheme_is_no_credentials(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, _, _ = await start(start_server, http)
    r = await client.post(initialize_body(), authorization="Basic dXNlcjpwYXNz")
    assert r.status_code == 401
    assert "error" not in challenge(r)


@pytest.mark.parametrize(
    "headers",
    [
        [("authorization", "Bearer a"), ("authorization", "Bearer b")],
        [("authorization", "Bearer")],
        [("authorization", "Bearer a b")],
    ],
)
async def test_malformed_credentials_get_400(
    start_server: StartServer, http: httpx.AsyncClient, headers: list[tuple[str, str]]
) -> None:
    client, verifier, _ = await start(start_server, http)
    r = await http.post(
        client.url, content=json.dumps(initialize_body()), headers=[*INIT_HEADERS.items(), *headers]
    )
    assert r.status_code == 400, r.text
    assert challenge(r)["error"] == "invalid_request"
    assert verifier.calls == 0


async def test_a_token_in_the_query_is_refused_not_used(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, _ = await start(start_server, http)
    good = verifier.add("good", "alice", "mcp")
    r = await http.post(
        client.url + "?access_token=" + good,
        content=json.dumps(initialize_body()),
        headers=INIT_HEADERS,
    )
    assert r.status_code == 400
    assert challenge(r)["error"] == "invalid_request"
    assert verifier.calls == 0


async def test_an_invalid_token_gets_401_invalid_token(
    start_server: StartServer, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    client, _, _ = await start(start_server, http)
    secret = "not-a-token-we-know"
    r = await client.post(initialize_body(), secret)
    assert r.status_code == 401
    params = challenge(r)
    assert params["error"] == "invalid_token"
    assert params["scope"] == "mcp"
    assert secret not in r.text
    assert secret not in r.headers["www-authenticate"]
    assert secret not in caplog.text  # never logged


async def test_an_unreachable_verifier_gets_503_never_401(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, _ = await start(start_server, http)
    token = verifier.add("t", "alice", "mcp")
    verifier.down = True
    r = await client.post(initialize_body(), token)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "7"
    assert "www-authenticate" not in r.headers


async def test_a_missing_base_scope_gets_403(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, app = await start(start_server, http)
    token = verifier.add("t", "alice", "other")
    r = await client.post(initialize_body(), token)
    assert r.status_code == 403
    assert challenge(r) == {
        "error": "insufficient_scope",
        "scope": "mcp",
        "resource_metadata": METADATA_URL,
        "error_description": "the access token lacks a scope",
    }
    assert app.manager.statistics().live_sessions == 0  # type: ignore[attr-defined]


# -- scopes per tool and method ------------------------------------------------------------


async def test_a_tool_call_without_its_scopes_gets_403_naming_all_of_them(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, app = await start(start_server, http)
    token = verifier.add("t", "alice", "mcp")
    session = await client.initialize(token)
    r = await client.call(token, session, "purge")
    assert r.status_code == 403
    assert challenge(r)["scope"] == "mcp notes:admin notes:write"
    assert r.json()["id"] == 5
    # The tool ran no handler and the session is untouched: a call with the scopes works.
    stepped = verifier.add("t2", "alice", "mcp", "notes:write", "notes:admin")
    r = await client.call(stepped, session, "purge")
    assert r.status_code == 200
    assert messages(r)[0]["result"]["content"][0]["text"] == "purged"
    # A tool that needs nothing more works with the base scope alone.
    r = await client.call(token, session, "whoami")
    assert messages(r)[0]["result"]["structuredContent"]["sub"] == "alice"
    stats = app.statistics().auth
    assert stats is not None
    assert stats.insufficient_scope == 1


async def test_a_batch_is_refused_whole_naming_the_union(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, _ = await start(start_server, http)
    token = verifier.add("t", "alice", "mcp", "notes:write")
    session = await client.initialize(token)
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate([("write_note", {"text": "x"}), ("purge", {})], 1)
    ]
    r = await client.post(batch, token, mcp_session_id=session, mcp_protocol_version="2025-03-26")
    assert r.status_code == 403, r.text
    assert challenge(r)["scope"] == "mcp notes:admin notes:write"


async def test_method_scopes_and_a_hierarchy(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, _ = await start(
        start_server,
        http,
        auth_options={
            "method_scopes": {"resources/read": {"notes:read"}},
            "scope_implies": lambda granted, needed: needed.startswith(granted + ":"),
        },
    )
    token = verifier.add("t", "alice", "mcp")
    session = await client.initialize(token)
    read = {"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "mem://a"}}
    headers = {"mcp_session_id": session, "mcp_protocol_version": "2025-11-25"}
    r = await client.post(read, token, **headers)
    assert r.status_code == 403
    assert challenge(r)["scope"] == "mcp notes:read"
    broad = verifier.add("t2", "alice", "mcp", "notes")  # "notes" implies "notes:read"
    r = await client.post(read, broad, **headers)
    assert r.status_code == 200
    r = await client.call(broad, session, "purge")
    assert r.status_code == 200  # notes:write and notes:admin are under "notes" too


async def test_lists_show_every_tool_unless_filtering_is_on(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    for filtering, expected in [
        (False, {"whoami", "write_note", "purge"}),
        (True, {"whoami", "write_note"}),
    ]:
        client, verifier, _ = await start(
            start_server, http, auth_options={"filter_lists": filtering}
        )
        token = verifier.add("t", "alice", "mcp", "notes:write")
        r = await client.modern(token, "tools/list", {})
        assert r.status_code == 200, r.text
        assert {t["name"] for t in messages(r)[0]["result"]["tools"]} == expected


# -- the caller, its sessions and its limits -------------------------------------------------


async def test_the_verified_caller_owns_the_session(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, _ = await start(start_server, http)
    alice = verifier.add("a1", "alice", "mcp")
    session = await client.initialize(alice)
    # Another user's valid token on Alice's session id: as if it did not exist.
    bob = verifier.add("b1", "bob", "mcp")
    r = await client.call(bob, session, "whoami")
    assert r.status_code == 404
    # The same user through another client is another principal too.
    other_client = verifier.add("a-other", "alice", "mcp", client="c2")
    assert (await client.call(other_client, session, "whoami")).status_code == 404
    # A refreshed token and a stepped-up one (same iss, sub, client) keep the session.
    for token in (verifier.add("a2", "alice", "mcp"), verifier.add("a3", "alice", "mcp", "x")):
        r = await client.call(token, session, "whoami")
        assert r.status_code == 200
        result = messages(r)[0]["result"]["structuredContent"]
        assert result["sub"] == "alice"
        assert json.loads(result["principal"]) == ["oauth", ISSUER, "alice", "c1"]
    r = await http.delete(
        client.url,
        headers={"mcp-session-id": session, "authorization": f"Bearer {bob}"},
    )
    assert r.status_code == 404
    r = await http.delete(
        client.url,
        headers={"mcp-session-id": session, "authorization": f"Bearer {alice}"},
    )
    assert r.status_code in (200, 204)


async def test_a_restored_session_keeps_its_caller(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    store = InMemorySessionStore()
    verifier = TableVerifier()
    alice = verifier.add("a", "alice", "mcp")
    bob = verifier.add("b", "bob", "mcp")
    first = StreamableHTTPApp(make_server(), auth=resource_server(verifier), session_store=store)
    session = await Client(http, await start_server(first)).initialize(alice)
    # Another instance with the same store: the session is restored for Alice only.
    second = Client(
        http,
        await start_server(
            StreamableHTTPApp(make_server(), auth=resource_server(verifier), session_store=store)
        ),
    )
    assert (await second.call(bob, session, "whoami")).status_code == 404
    r = await second.call(alice, session, "whoami")
    assert r.status_code == 200, r.text


async def test_per_client_limits_key_on_the_caller_not_the_address(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, _ = await start(
        start_server,
        http,
        call_limits=CallLimits(rate_limit_per_client=RateLimit(1, 60.0)),
        refusal_delay=0.0,
    )
    alice = verifier.add("a", "alice", "mcp")
    bob = verifier.add("b", "bob", "mcp")
    assert (await client.modern(alice, "tools/call", {"name": "whoami"})).status_code == 200
    assert (await client.modern(alice, "tools/call", {"name": "whoami"})).status_code == 429
    # Same address, another user: a budget of its own.
    assert (await client.modern(bob, "tools/call", {"name": "whoami"})).status_code == 200


async def test_failed_verifications_are_rate_limited_per_peer(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, app = await start(
        start_server,
        http,
        auth_options={"max_failed_verifications": RateLimit(3, 60.0)},
        refusal_delay=0.0,
    )
    good = verifier.add("good", "alice", "mcp")
    for n in range(3):
        assert (await client.post(initialize_body(), f"bad{n}")).status_code == 401
    assert verifier.calls == 3
    r = await client.post(initialize_body(), "bad-again")
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    # Refused unverified: no JWKS fetch or introspection call for it, nor for this one.
    r = await client.post(initialize_body(), good)
    assert r.status_code == 429
    assert verifier.calls == 3
    stats = app.statistics().auth
    assert stats is not None
    assert stats.throttled == 2
    assert stats.failing_keys == 1


# -- 2026-07-28 ------------------------------------------------------------------------------


async def test_sessionless_requests_are_checked_the_same_way(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    client, verifier, _ = await start(start_server, http)
    r = await client.modern(None, "tools/call", {"name": "whoami"})
    assert r.status_code == 401
    token = verifier.add("t", "alice", "mcp")
    r = await client.modern(token, "tools/call", {"name": "whoami"})
    assert r.status_code == 200
    assert messages(r)[0]["result"]["structuredContent"]["sub"] == "alice"
    r = await client.modern(token, "tools/call", {"name": "write_note", "arguments": {"text": "x"}})
    assert r.status_code == 403
    assert challenge(r)["scope"] == "mcp notes:write"
    r = await client.modern(token, "server/discover", {})
    assert r.status_code == 200


# -- streams end when their token does ---------------------------------------------------------


@asynccontextmanager
async def streaming(
    http: httpx.AsyncClient, method: str, url: str, headers: dict[str, str], body: Any = None
) -> AsyncIterator[tuple[httpx.Response, SseReader]]:
    reader = SseReader()
    content = json.dumps(body) if body is not None else None
    async with (
        http.stream(method, url, headers=headers, content=content) as r,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(reader.pump, r)
        yield r, reader
        nursery.cancel_scope.cancel()


async def test_a_get_stream_ends_at_the_token_expiry_with_a_retry_hint(
    start_server: StartServer, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    autojump_clock.autojump_threshold = 0.01  # real sockets: let the kernel answer first
    client, verifier, _ = await start(start_server, http, retry_ms=1500)
    token = verifier.add("t", "alice", "mcp", ttl=6)
    session = await client.initialize(token)
    started = trio.current_time()
    headers = {
        "accept": "text/event-stream",
        "mcp-session-id": session,
        "mcp-protocol-version": "2025-11-25",
        "authorization": f"Bearer {token}",
    }
    async with streaming(http, "GET", client.url, headers) as (r, sse):
        assert r.status_code == 200
        with trio.fail_after(9):
            events = await sse.rest()
    elapsed = trio.current_time() - started
    assert 5 <= elapsed <= 7, elapsed
    assert events
    assert events[-1].retry == 1500


async def test_a_listen_stream_ends_at_the_token_expiry_with_its_result(
    start_server: StartServer, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    autojump_clock.autojump_threshold = 0.01
    client, verifier, app = await start(start_server, http)
    token = verifier.add("t", "alice", "mcp", ttl=5)
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "subscriptions/listen",
        "params": {"_meta": META, "notifications": {"toolsListChanged": True}},
    }
    headers = {
        **INIT_HEADERS,
        "mcp-protocol-version": MODERN,
        "mcp-method": "subscriptions/listen",
        "authorization": f"Bearer {token}",
    }
    started = trio.current_time()
    async with streaming(http, "POST", client.url, headers, body) as (r, sse):
        assert r.status_code == 200
        with trio.fail_after(9):
            events = await sse.rest()
    elapsed = trio.current_time() - started
    assert 4.5 <= elapsed <= 6, elapsed
    assert events[-1].json()["id"] == 7  # the SubscriptionsListenResult
    assert app.sessionless is not None
    assert app.sessionless.listen.statistics().ended_token_expired == 1


def test_auth_and_a_principal_hook_are_exclusive() -> None:
    with pytest.raises(TypeError, match="auth or principal"):
        StreamableHTTPApp(
            make_server(), auth=resource_server(TableVerifier()), principal=lambda scope: "x"
        )


async def test_the_resource_server_in_the_metrics(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    pytest.importorskip("prometheus_client", reason="needs the metrics extra")
    client, verifier, _ = await start(start_server, http, metrics_path="/metrics")
    token = verifier.add("t", "alice", "mcp")
    await client.post(initialize_body())
    await client.post(initialize_body(), "bad")
    await client.post(initialize_body(), token)
    text = (await http.get(client.origin + "/metrics")).text.splitlines()
    for line in (
        'mcp_auth_requests_total{outcome="verified"} 1.0',
        'mcp_auth_requests_total{outcome="missing"} 1.0',
        'mcp_auth_requests_total{outcome="invalid"} 1.0',
        "mcp_auth_failing_keys 1.0",
        "mcp_auth_verifier_calls_total 2.0",  # the verifier's own record, field by field
        "mcp_auth_verifier_cached_tokens 1.0",
        "mcp_listen_ended_token_expired_total 0.0",
    ):
        assert line in text, line


# -- hostile credentials, in process -----------------------------------------------------------

_authorization_values = st.one_of(
    st.binary(max_size=60),
    st.builds(lambda t: b"Bearer " + t, st.binary(max_size=60)),
    st.builds(lambda t: b"bearer\t" + t.encode(), st.text(max_size=20)),
    st.sampled_from([b"Bearer", b"Bearer ", b"Basic", b" Bearer x", b"Bearer x=y=", b"Bearer =="]),
)


@settings(max_examples=150, deadline=None)
@example(values=[b" Bearer x"], query=b"", method="POST")
@given(
    values=st.lists(_authorization_values, max_size=3),
    query=st.sampled_from([b"", b"access_token=x", b"a=b", b"ACCESS_TOKEN", b"%00"]),
    method=st.sampled_from(["POST", "GET", "DELETE"]),
)
def test_hostile_credentials_get_a_clear_answer(
    values: list[bytes], query: bytes, method: str
) -> None:
    """Whatever the Authorization headers hold: 400, 401 or 429, never a verifier's 200 by luck."""

    async def main() -> None:
        verifier = TableVerifier()
        app = StreamableHTTPApp(make_server(), auth=resource_server(verifier), refusal_delay=0)
        async with open_test_client(app) as client:
            headers = [
                (b"accept", b"application/json, text/event-stream"),
                (b"content-type", b"application/json"),
                *((b"authorization", v) for v in values),
            ]
            body = json.dumps(initialize_body()).encode()
            response = await client.send(
                method, body, path=f"/mcp?{query.decode()}", headers=headers
            )
            assert response.status in (400, 401), (response.status, values, query)
            header = response.headers["www-authenticate"]
            if response.status == 400:
                assert 'error="invalid_request"' in header
            elif verifier.calls:  # a well-formed token, unknown to the verifier
                assert 'error="invalid_token"' in header
            else:  # no credentials: no error (RFC 6750 3.1)
                assert "error=" not in header
            stats = app.statistics().auth
            assert stats is not None
            assert stats.verified == 0
            assert app.manager.statistics().live_sessions == 0  # type: ignore[attr-defined]

    trio.run(main)


class HangingVerifier:
    """An authorization server that never answers, and no deadline of its own."""

    async def verify(self, token: str) -> VerifiedToken:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover


async def test_a_verification_that_hangs_gets_503_at_verify_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    auth = ResourceServer("http://127.0.0.1/mcp", [ISSUER], HangingVerifier(), verify_timeout=4)
    async with open_test_client(
        make_server(), auth=auth, headers={"authorization": "Bearer t"}
    ) as client:
        started = trio.current_time()
        response = await client.post(initialize_body())
        assert trio.current_time() - started == pytest.approx(4)
        assert response.status == 503
        assert response.headers["retry-after"] == "5"
        assert "www-authenticate" not in response.headers
        stats = client.app.statistics().auth
        assert stats is not None
        assert stats.unavailable == 1
