"""The negative matrix of the authorization reference (section 5), against a real AS.

The authorization server is ``oidc-provider`` on loopback (``_oidc_provider``;
one per module, plus a short-TTL one and, for the tests that stop or restart
it, one of their own). Our side is a real Hypercorn serving
``StreamableHTTPApp(server, auth=ResourceServer(...))`` with our own
:class:`JwtVerifier` or :class:`IntrospectionVerifier`; the port is bound
first so that ``resource`` is the endpoint's real URL, and the AS issues
tokens for it (``resource`` = that URL). Requests are plain httpx, so each
test sees the exact status and ``WWW-Authenticate`` a client gets.

Forged tokens are signed with the AS's own private key (the harness keeps
its key set in a file), from the claims of a token the AS issued: only the
one claim under test is wrong, and the unchanged re-signed token is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from _harness import SseReader, manager_of, messages
from _oidc_provider import SVC_CLIENT, SVC_SECRET, Browser, OidcProvider, provider_tools
from conftest import INIT_HEADERS, initialize_body
from trio_mcp_sessions import (
    Context,
    IntrospectionVerifier,
    IntrospectionVerifierStatistics,
    JwtVerifier,
    JwtVerifierStatistics,
    McpServer,
    ResourceServer,
    SqliteSessionStore,
    StreamableHTTPApp,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from _conformance_tools import ConformanceTools

pytestmark = pytest.mark.usefixtures("no_tracebacks")

BASE = "notes:read"
WRITE = "notes:write"
ADMIN = "notes:admin"
PARENT = "notes"
"""Implies every ``notes:*`` scope under the hierarchy hook (the AS knows it as a scope)."""
AS_SCOPES = (BASE, WRITE, PARENT)
DEADLINE = 30.0
"""Seconds any one test may take (each takes well under two)."""
PROTOCOL = "2025-11-25"
RETRY_MS = 1500


# -- the authorization servers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tools() -> ConformanceTools:
    return provider_tools()


@pytest.fixture(scope="module")
def provider(tools: ConformanceTools) -> Iterator[OidcProvider]:
    with OidcProvider(tools, scopes=AS_SCOPES) as running:
        yield running


@pytest.fixture(scope="module")
def short(tools: ConformanceTools) -> Iterator[OidcProvider]:
    """Tokens of 2 s: good for 1 to 2 s, as ``exp`` is whole seconds (``iat`` rounded down)."""
    with OidcProvider(tools, access_token_ttl=2, scopes=AS_SCOPES) as running:
        yield running


@asynccontextmanager
async def own_provider(tools: ConformanceTools) -> AsyncIterator[OidcProvider]:
    """An AS for one test that stops or restarts it (started and ended off the loop)."""
    running = OidcProvider(tools, scopes=AS_SCOPES)
    await trio.to_thread.run_sync(running.start)
    try:
        yield running
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(running.__exit__, None, None, None)


# -- our resource server ---------------------------------------------------------------------


def make_server() -> McpServer:
    server = McpServer("protected-matrix", "1.0.0")

    @server.tool()
    async def whoami(ctx: Context) -> dict[str, Any]:
        """Who the token says is calling."""
        token = ctx.token
        assert token is not None
        return {"sub": token.subject, "client_id": token.client_id, "principal": ctx.principal}

    @server.tool(scopes={WRITE})
    async def write_note(text: str) -> str:
        """Needs notes:write on top of the base scope."""
        return f"wrote {text}"

    @server.tool(scopes={WRITE, ADMIN})
    async def purge() -> str:
        """Needs two scopes on top of the base one."""
        return "purged"

    return server


def notes_hierarchy(granted: str, needed: str) -> bool:
    """``notes`` covers ``notes:read``, ``notes:write``, ``notes:admin``."""
    return needed.startswith(granted + ":")


Verifier = JwtVerifier | IntrospectionVerifier


@dataclass
class Ours:
    """One of our servers: its URL (= its ``resource``), the app, the verifier."""

    url: str
    app: StreamableHTTPApp
    verifier: Verifier
    port: int
    stop: trio.Event
    stopped: trio.Event

    @property
    def metadata_url(self) -> str:
        origin, _, path = self.url.rpartition("/")
        return f"{origin}/.well-known/oauth-protected-resource/{path}"

    async def shut_down(self) -> None:
        self.stop.set()
        with trio.fail_after(10):
            await self.stopped.wait()


async def _hypercorn(
    app: StreamableHTTPApp,
    config: Config,
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]
    finally:
        stopped.set()


async def serve_ours(
    nursery: trio.Nursery,
    make_verifier: Callable[[str], Verifier],
    *,
    path: str = "/mcp",
    port: int = 0,
    scope_implies: Callable[[str, str], bool] | None = notes_hierarchy,
    **app_options: Any,
) -> Ours:
    """Our server on 127.0.0.1 (*port*, or a free one); ``resource`` is the URL it is reached at."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(100)
    port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}{path}"
    verifier = make_verifier(url)
    issuer = verifier.issuer
    auth = ResourceServer(
        resource=url,
        authorization_servers=[issuer],
        verifier=verifier,
        scopes={BASE},
        scope_implies=scope_implies,
    )
    app = StreamableHTTPApp(make_server(), auth=auth, path=path, **app_options)
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns the socket from here
    config.accesslog = None
    config.graceful_timeout = 0.5
    stop, stopped = trio.Event(), trio.Event()
    await nursery.start(_hypercorn, app, config, stop, stopped)
    return Ours(url, app, verifier, port, stop, stopped)


def jwt_verifier(provider: OidcProvider, **options: Any) -> Callable[[str], Verifier]:
    return lambda url: JwtVerifier(provider.issuer, url, **options)


def jwt_stats(ours: Ours) -> JwtVerifierStatistics:
    assert isinstance(ours.verifier, JwtVerifier)
    return ours.verifier.statistics()


def introspection_stats(ours: Ours) -> IntrospectionVerifierStatistics:
    assert isinstance(ours.verifier, IntrospectionVerifier)
    return ours.verifier.statistics()


def introspection_verifier(provider: OidcProvider) -> Callable[[str], Verifier]:
    return lambda url: IntrospectionVerifier(
        provider.issuer, url, client_id=SVC_CLIENT, client_secret=SVC_SECRET
    )


# -- the client side -------------------------------------------------------------------------


@pytest.fixture
async def browser(provider: OidcProvider) -> AsyncIterator[Browser]:
    async with Browser(provider) as agent:
        yield agent


async def post(
    http: httpx.AsyncClient,
    ours: Ours,
    body: Any,
    token: str | None,
    session: str | None = None,
) -> httpx.Response:
    headers = dict(INIT_HEADERS)
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if session is not None:
        headers |= {"mcp-session-id": session, "mcp-protocol-version": PROTOCOL}
    return await http.post(ours.url, content=json.dumps(body), headers=headers)


async def initialize(http: httpx.AsyncClient, ours: Ours, token: str) -> str:
    r = await post(http, ours, initialize_body(PROTOCOL), token)
    assert r.status_code == 200, r.text
    session = r.headers["mcp-session-id"]
    done = await post(
        http, ours, {"jsonrpc": "2.0", "method": "notifications/initialized"}, token, session
    )
    assert done.status_code == 202, done.text
    return session


async def call(
    http: httpx.AsyncClient, ours: Ours, token: str, session: str, name: str, **arguments: Any
) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    return await post(http, ours, body, token, session)


def result_of(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    (message,) = messages(r)
    assert "error" not in message, message
    return message["result"]


_PARAM = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"(?:, |$)')


def challenge(r: httpx.Response) -> dict[str, str]:
    """The ``Bearer`` challenge's parameters (every one a quoted-string)."""
    values = r.headers.get_list("www-authenticate")
    assert len(values) == 1, values
    scheme, _, rest = values[0].partition(" ")
    assert scheme == "Bearer", values
    params = dict(_PARAM.findall(rest))
    assert ", ".join(f'{k}="{v}"' for k, v in params.items()) == rest, rest
    return params


def assert_invalid_token(r: httpx.Response, ours: Ours, description: str) -> None:
    """401 ``invalid_token`` with the base scope and the metadata URL, nothing else."""
    assert r.status_code == 401, r.text
    assert challenge(r) == {
        "error": "invalid_token",
        "scope": BASE,
        "resource_metadata": ours.metadata_url,
        "error_description": description,
    }
    error = r.json()["error"]
    assert error["data"] == {
        "resource_metadata": ours.metadata_url,
        "error": "invalid_token",
        "scope": BASE,
    }


def assert_unavailable(r: httpx.Response) -> None:
    """503 + ``Retry-After``, and no challenge: a 401 would send the client to re-authorize."""
    assert r.status_code == 503, r.text
    assert "www-authenticate" not in r.headers
    assert int(r.headers["retry-after"]) >= 1


async def client_token(browser: Browser, resource: str, scope: str = BASE) -> str:
    """A ``client_credentials`` token of ``svc`` for *resource*."""
    body = await browser.client_credentials(resource=resource, scope=scope)
    token: str = body["access_token"]
    return token


# -- forging with the AS's own key -------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT's header and claims, unchecked (to copy them into a forgery)."""
    header, claims, _ = token.split(".")
    head, body = (
        json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        for part in (header, claims)
    )
    return head, body


def as_signing_key(provider: OidcProvider) -> tuple[str, ECKey]:
    """The AS's private signing key (from the harness's key set file) and its ``kid``."""
    (private,) = json.loads(provider.jwks_path.read_text())["keys"]
    return private["kid"], ECKey.import_key(private)


def resign(
    provider: OidcProvider,
    token: str,
    *,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    key: tuple[str, ECKey] | None = None,
) -> str:
    """*token* signed again with ES256, its header and claims changed as asked."""
    old_header, old_claims = unverified(token)
    kid, signing_key = key if key is not None else as_signing_key(provider)
    new_header = {**old_header, "kid": kid, **(header or {})}
    new_header = {k: v for k, v in new_header.items() if v is not None}
    new_claims = {**old_claims, **(claims or {})}
    new_claims = {k: v for k, v in new_claims.items() if v is not None}
    return jose_jwt.encode(new_header, new_claims, signing_key, algorithms=["ES256"])


# -- a good token, and JWTs with one thing wrong ------------------------------------------------


async def test_a_good_token_works_and_none_gets_a_challenge_without_error(
    provider: OidcProvider, browser: Browser, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, jwt_verifier(provider))
        metadata = (await http.get(ours.metadata_url)).raise_for_status().json()
        assert metadata["resource"] == ours.url
        assert metadata["authorization_servers"] == [provider.issuer]

        r = await post(http, ours, initialize_body(PROTOCOL), None)
        assert r.status_code == 401
        assert challenge(r) == {"scope": BASE, "resource_metadata": ours.metadata_url}

        token = await client_token(browser, ours.url)
        session = await initialize(http, ours, token)
        me = result_of(await call(http, ours, token, session, "whoami"))["structuredContent"]
        assert (me["sub"], me["client_id"]) == (SVC_CLIENT, SVC_CLIENT)
        assert json.loads(me["principal"]) == ["oauth", provider.issuer, SVC_CLIENT, SVC_CLIENT]
        assert isinstance(ours.verifier, JwtVerifier)
        stats = ours.verifier.statistics()
        assert (stats.verified, stats.invalid, stats.jwks_fetches) == (3, 0, 1)


NOT_AN_ACCESS_TOKEN = "the token is not a JWT access token (typ)"
FORGERIES: dict[str, tuple[Callable[[float], dict[str, Any]], str]] = {
    # name: (what changes, given now → header/claims changes), the 401's error_description
    "unchanged": (lambda now: {}, ""),
    "not yet valid": (
        lambda now: {"claims": {"nbf": int(now) + 3600}},
        "the token is not valid yet",
    ),
    "issued in the future": (
        lambda now: {"claims": {"iat": int(now) + 3600}},
        "the token was issued in the future",
    ),
    "expired long ago": (
        lambda now: {"claims": {"iat": int(now) - 7200, "exp": int(now) - 3600}},
        "the token has expired",
    ),
    "no expiry": (lambda now: {"claims": {"exp": None}}, "the token has no valid expiry"),
    "typ JWT": (lambda now: {"header": {"typ": "JWT"}}, NOT_AN_ACCESS_TOKEN),
    "no typ": (lambda now: {"header": {"typ": None}}, NOT_AN_ACCESS_TOKEN),
    "another issuer": (
        lambda now: {"claims": {"iss": "http://127.0.0.1:9/other-issuer"}},
        "the token was issued by another issuer",
    ),
    "another audience": (
        lambda now: {"claims": {"aud": "http://127.0.0.1:9/mcp"}},
        "the token was not issued for this resource",
    ),
}


@pytest.mark.parametrize("case", list(FORGERIES))
async def test_a_jwt_signed_by_the_as_with_one_claim_wrong(
    case: str,
    provider: OidcProvider,
    browser: Browser,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
) -> None:
    change, description = FORGERIES[case]
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, jwt_verifier(provider))
        issued = await client_token(browser, ours.url)
        forged = resign(provider, issued, **change(time.time()))
        r = await post(http, ours, initialize_body(PROTOCOL), forged)
        if case == "unchanged":
            assert r.status_code == 200, r.text  # the forging itself is sound
        else:
            assert_invalid_token(r, ours, description)
        stats = jwt_stats(ours)
        # typ and iss are read before any key is needed: no fetch for those.
        sans_io = case in ("typ JWT", "no typ", "another issuer")
        assert stats.jwks_fetches == (0 if sans_io else 1)


async def test_a_token_for_another_resource(
    provider: OidcProvider, browser: Browser, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    """RFC 8707: the AS issued it, for ``…/other`` on the same host and port."""
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, jwt_verifier(provider))
        other = await client_token(browser, ours.url.rsplit("/", 1)[0] + "/other")
        assert unverified(other)[1]["aud"] != ours.url
        r = await post(http, ours, initialize_body(PROTOCOL), other)
        assert_invalid_token(r, ours, "the token was not issued for this resource")


async def test_an_id_token_is_not_an_access_token(
    provider: OidcProvider, browser: Browser, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    """Refused by ``typ``; and with the ``typ`` check off, by ``aud`` (the client id)."""
    with trio.fail_after(DEADLINE):
        strict = await serve_ours(nursery, jwt_verifier(provider))
        lenient = await serve_ours(nursery, jwt_verifier(provider, require_typ=False))
        # One grant for the strict server's resource; the ID token is the same either way.
        body = await browser.authorization_code(resource=strict.url, scope=f"openid {BASE}")
        id_token = body["id_token"]
        header, claims = unverified(id_token)
        assert header.get("typ") != "at+jwt"
        assert claims["iss"] == provider.issuer
        assert claims["sub"] == "alice"
        r = await post(http, strict, initialize_body(PROTOCOL), body["access_token"])
        assert r.status_code == 200, r.text
        r = await post(http, strict, initialize_body(PROTOCOL), id_token)
        assert_invalid_token(r, strict, "the token is not a JWT access token (typ)")
        r = await post(http, lenient, initialize_body(PROTOCOL), id_token)
        assert_invalid_token(r, lenient, "the token was not issued for this resource")


async def test_alg_none_and_hs256_with_the_public_key(
    provider: OidcProvider, browser: Browser, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, jwt_verifier(provider))
        issued = await client_token(browser, ours.url)
        header, claims = unverified(issued)

        unsigned = f"{_segment({**header, 'alg': 'none'})}.{_segment(claims)}."
        r = await post(http, ours, initialize_body(PROTOCOL), unsigned)
        assert_invalid_token(r, ours, "the access token is not a signed JWT")
        # With a signature part, none is still refused, for its algorithm.
        fake = f"{_segment({**header, 'alg': 'none'})}.{_segment(claims)}.{_b64(b'x')}"
        r = await post(http, ours, initialize_body(PROTOCOL), fake)
        assert_invalid_token(r, ours, "the token's signature algorithm is not allowed")

        # HS256 keyed with the AS's published key, as PEM and as its JWKS entry.
        jwks = (await http.get(provider.jwks_uri)).raise_for_status().json()
        (published,) = jwks["keys"]
        public_pem = ECKey.import_key(published).as_pem(private=False)
        for secret in (public_pem, json.dumps(published).encode()):
            signing_input = f"{_segment({**header, 'alg': 'HS256'})}.{_segment(claims)}"
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            r = await post(http, ours, initialize_body(PROTOCOL), f"{signing_input}.{_b64(mac)}")
            assert_invalid_token(r, ours, "the token's signature algorithm is not allowed")

        # Nothing here was worth a key set fetch.
        assert jwt_stats(ours).jwks_fetches == 0


async def test_an_unknown_key_id_costs_exactly_one_refetch(
    provider: OidcProvider, browser: Browser, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, jwt_verifier(provider))
        verifier = ours.verifier
        assert isinstance(verifier, JwtVerifier)
        issued = await client_token(browser, ours.url)
        assert (await post(http, ours, initialize_body(PROTOCOL), issued)).status_code == 200
        assert verifier.statistics().jwks_fetches == 1

        never_published = ("never-published", ECKey.generate_key("P-256"))
        forged = resign(provider, issued, key=never_published)
        r = await post(http, ours, initialize_body(PROTOCOL), forged)
        assert_invalid_token(r, ours, "the token's key id is not one of the issuer's keys")
        stats = verifier.statistics()
        assert (stats.jwks_fetches, stats.jwks_fetch_failures) == (2, 0)
        assert stats.refetches_suppressed == 0

        # More unknown kids within the refetch interval: refused without a fetch.
        for n in range(3):
            again = resign(provider, issued, key=(f"also-unknown-{n}", never_published[1]))
            r = await post(http, ours, initialize_body(PROTOCOL), again)
            assert_invalid_token(r, ours, "the token's key id is not one of the issuer's keys")
        stats = verifier.statistics()
        assert (stats.jwks_fetches, stats.refetches_suppressed) == (2, 3)
        assert (stats.verified, stats.invalid) == (1, 4)


async def test_key_rotation_new_key_after_one_refetch_old_key_refused(
    tools: ConformanceTools, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(DEADLINE):
        async with own_provider(tools) as rotating, Browser(rotating) as browser:
            ours = await serve_ours(nursery, jwt_verifier(rotating))
            verifier = ours.verifier
            assert isinstance(verifier, JwtVerifier)
            old = await client_token(browser, ours.url)
            assert (await post(http, ours, initialize_body(PROTOCOL), old)).status_code == 200
            assert verifier.statistics().jwks_fetches == 1

            old_kids = list(rotating.kids)
            await trio.to_thread.run_sync(partial(rotating.restart, rotate_keys=True))
            assert not set(rotating.kids) & set(old_kids)
            new = await client_token(browser, ours.url)
            assert unverified(new)[0]["kid"] in rotating.kids

            # The new key's token: one refetch, then accepted.
            assert (await post(http, ours, initialize_body(PROTOCOL), new)).status_code == 200
            assert verifier.statistics().jwks_fetches == 2
            # The old key's token (still unexpired): its key is gone.
            r = await post(http, ours, initialize_body(PROTOCOL), old)
            assert_invalid_token(r, ours, "the token's key id is not one of the issuer's keys")
            stats = verifier.statistics()
            assert (stats.jwks_fetches, stats.jwks_fetch_failures) == (2, 0)
            assert (stats.verified, stats.invalid) == (2, 1)


async def test_an_expired_token(
    short: OidcProvider, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    """The same token works, then after ``exp`` (no leeway here) gets 401.

    The AS stamps ``exp`` with the wall clock; the verifier reads its own
    clock hook, so the test moves that past ``exp`` instead of sleeping.
    """
    skew = 0.0
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(
            nursery, jwt_verifier(short, leeway=0, clock=lambda: time.time() + skew)
        )
        async with Browser(short) as browser:
            token = await client_token(browser, ours.url)
        exp = unverified(token)[1]["exp"]
        assert (await post(http, ours, initialize_body(PROTOCOL), token)).status_code == 200
        skew = exp - time.time() + 0.05  # the verifier's clock is just past exp now
        r = await post(http, ours, initialize_body(PROTOCOL), token)
        assert_invalid_token(r, ours, "the token has expired")


# -- introspection (opaque tokens: the AS issues them for indicators ending in /opaque) ----------


async def revoke(browser: Browser, token: str) -> None:
    """RFC 7009 at the AS, as the confidential client that holds the token."""
    r = await browser.http.post(
        f"{browser.provider.issuer}/token/revocation",
        data={"token": token},
        auth=(SVC_CLIENT, SVC_SECRET),
    )
    assert r.status_code == 200, r.text


async def test_introspection_active_cached_revoked_inactive_and_another_audience(
    provider: OidcProvider, browser: Browser, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, introspection_verifier(provider), path="/opaque")
        assert ours.url.endswith("/opaque")
        token = await client_token(browser, ours.url)
        assert "." not in token  # opaque

        # Active: three requests, one introspection, then the cache.
        session = await initialize(http, ours, token)
        me = result_of(await call(http, ours, token, session, "whoami"))["structuredContent"]
        # oidc-provider's introspection of a client_credentials token has no sub.
        assert (me["sub"], me["client_id"]) == (None, SVC_CLIENT)
        stats = introspection_stats(ours)
        assert (stats.introspections, stats.cache_misses, stats.cache_hits) == (1, 1, 2)
        assert (stats.verified, stats.cached_active, stats.introspection_failures) == (3, 1, 0)

        # Revoked at the AS before first use: inactive, and that answer is cached too.
        revoked = await client_token(browser, ours.url)
        await revoke(browser, revoked)
        for _ in range(2):
            r = await post(http, ours, initialize_body(PROTOCOL), revoked)
            assert_invalid_token(r, ours, "the token is not active")
        stats = introspection_stats(ours)
        assert (stats.introspections, stats.cache_hits, stats.cached_inactive) == (2, 3, 1)

        # A token the AS never issued: inactive.
        r = await post(http, ours, initialize_body(PROTOCOL), "not-a-token-of-this-server")
        assert_invalid_token(r, ours, "the token is not active")

        # Active at the AS, but for another resource (RFC 8707 through introspection).
        other = await client_token(browser, ours.url.rsplit("/", 1)[0] + "/other/opaque")
        r = await post(http, ours, initialize_body(PROTOCOL), other)
        assert_invalid_token(r, ours, "the token was not issued for this resource")

        stats = introspection_stats(ours)
        assert (stats.introspections, stats.introspection_failures) == (4, 0)
        assert (stats.verified, stats.invalid) == (3, 4)


async def test_a_jwt_sent_to_an_introspecting_server(
    provider: OidcProvider, browser: Browser, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    """oidc-provider cannot introspect its JWTs: it answers 400 ``unsupported_token_type``.

    That is a token the AS will not vouch for (401, cached as inactive), not an
    outage: a 503 would have the client retry forever, each retry an introspection.
    """
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, introspection_verifier(provider), path="/opaque")
        jwt_token = await client_token(browser, ours.url.rsplit("/", 1)[0] + "/mcp")
        assert jwt_token.count(".") == 2
        for _ in range(2):
            r = await post(http, ours, initialize_body(PROTOCOL), jwt_token)
            assert_invalid_token(r, ours, "the token is not active")
        stats = introspection_stats(ours)
        assert (stats.introspections, stats.introspection_failures) == (1, 0)
        assert (stats.invalid, stats.unavailable, stats.cached_inactive) == (2, 0, 1)


async def test_the_as_down_is_503_with_retry_after_never_401(
    tools: ConformanceTools, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    """What needs no I/O still works; what needs the AS gets 503 + ``Retry-After``."""
    with trio.fail_after(DEADLINE):
        async with own_provider(tools) as down:
            jwt_server = await serve_ours(nursery, jwt_verifier(down))
            opaque_server = await serve_ours(nursery, introspection_verifier(down), path="/opaque")
            fresh_server = await serve_ours(nursery, jwt_verifier(down))  # no keys yet
            async with Browser(down) as browser:
                jwt_first, jwt_later = [await client_token(browser, jwt_server.url) for _ in "ab"]
                seen, unseen = [await client_token(browser, opaque_server.url) for _ in "ab"]
                fresh = await client_token(browser, fresh_server.url)
            body = initialize_body(PROTOCOL)
            assert (await post(http, jwt_server, body, jwt_first)).status_code == 200
            assert (await post(http, opaque_server, body, seen)).status_code == 200

            await trio.to_thread.run_sync(down.stop)

            # Cached keys and a cached answer: no I/O, still served.
            assert (await post(http, jwt_server, body, jwt_later)).status_code == 200
            assert (await post(http, opaque_server, body, seen)).status_code == 200
            # An answer not cached yet: the AS is needed and down.
            assert_unavailable(await post(http, opaque_server, body, unseen))
            stats = introspection_stats(opaque_server)
            assert (stats.introspections, stats.introspection_failures) == (2, 1)
            assert (stats.unavailable, stats.invalid) == (1, 0)
            # No keys yet: 503 each time, and one fetch, not one per request.
            for _ in range(3):
                assert_unavailable(await post(http, fresh_server, body, fresh))
            fresh_stats = jwt_stats(fresh_server)
            assert (fresh_stats.jwks_fetches, fresh_stats.jwks_fetch_failures) == (1, 1)
            assert (fresh_stats.unavailable, fresh_stats.invalid) == (3, 0)
            for server in (opaque_server, fresh_server):
                auth = server.app.statistics().auth
                assert auth is not None
                assert auth.invalid == 0
                assert auth.unavailable >= 1


# -- scopes ------------------------------------------------------------------------------------


def assert_insufficient_scope(r: httpx.Response, ours: Ours, *needed: str) -> None:
    """403 naming every scope the operation needs (not only the missing ones)."""
    assert r.status_code == 403, r.text
    assert challenge(r) == {
        "error": "insufficient_scope",
        "scope": " ".join(sorted(needed)),
        "resource_metadata": ours.metadata_url,
        "error_description": "the access token lacks a scope",
    }


async def test_per_tool_403_names_every_scope_and_the_hierarchy_hook(
    provider: OidcProvider, browser: Browser, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, jwt_verifier(provider))  # notes implies notes:*
        strict = await serve_ours(nursery, jwt_verifier(provider), scope_implies=None)
        read = await client_token(browser, ours.url, BASE)
        both = await client_token(browser, ours.url, f"{BASE} {WRITE}")
        parent = await client_token(browser, ours.url, PARENT)
        assert unverified(parent)[1]["scope"] == PARENT

        session = await initialize(http, ours, read)
        r = await call(http, ours, read, session, "write_note", text="x")
        assert_insufficient_scope(r, ours, BASE, WRITE)
        r = await call(http, ours, read, session, "purge")
        assert_insufficient_scope(r, ours, BASE, WRITE, ADMIN)
        # Stepped up (same caller): the same session, the call goes through.
        r = await call(http, ours, both, session, "write_note", text="x")
        assert result_of(r)["content"][0]["text"] == "wrote x"
        # Still short of notes:admin: the 403 names all three again, not only the missing one.
        r = await call(http, ours, both, session, "purge")
        assert_insufficient_scope(r, ours, BASE, WRITE, ADMIN)
        # The parent scope covers every notes:* scope, base included.
        r = await call(http, ours, parent, session, "purge")
        assert result_of(r)["content"][0]["text"] == "purged"

        # The base scope on GET and DELETE too: notes:write alone does not cover notes:read.
        write_only = await client_token(browser, ours.url, WRITE)
        headers = {
            "mcp-session-id": session,
            "mcp-protocol-version": PROTOCOL,
            "authorization": f"Bearer {write_only}",
        }
        r = await http.get(ours.url, headers={**headers, "accept": "text/event-stream"})
        assert_insufficient_scope(r, ours, BASE)
        assert_insufficient_scope(await http.delete(ours.url, headers=headers), ours, BASE)
        assert manager_of(ours.app).statistics().live_sessions == 1  # nothing was torn down

        # Without the hook, the parent scope is only itself: not even the base scope.
        parent_for_strict = await client_token(browser, strict.url, PARENT)
        r = await post(http, strict, initialize_body(PROTOCOL), parent_for_strict)
        assert_insufficient_scope(r, strict, BASE)


# -- sessions ----------------------------------------------------------------------------------


async def user_token(provider: OidcProvider, user: str, resource: str) -> str:
    """*user*'s access token by the authorization code grant (headless login)."""
    async with Browser(provider, user=user) as agent:
        body = await agent.authorization_code(resource=resource, scope=BASE)
    token: str = body["access_token"]
    return token


async def test_another_users_token_on_a_session_is_404(
    provider: OidcProvider, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, jwt_verifier(provider))
        alice = await user_token(provider, "alice", ours.url)
        bob = await user_token(provider, "bob", ours.url)
        session = await initialize(http, ours, alice)

        r = await call(http, ours, bob, session, "whoami")
        assert r.status_code == 404, r.text
        assert "www-authenticate" not in r.headers  # bob is authenticated; the session is not his
        headers = {"mcp-session-id": session, "mcp-protocol-version": PROTOCOL}
        r = await http.delete(ours.url, headers={**headers, "authorization": f"Bearer {bob}"})
        assert r.status_code == 404
        me = result_of(await call(http, ours, alice, session, "whoami"))["structuredContent"]
        assert me["sub"] == "alice"
        r = await http.delete(ours.url, headers={**headers, "authorization": f"Bearer {alice}"})
        assert r.status_code == 200


async def test_a_sqlite_restored_session_is_its_owners_only(
    provider: OidcProvider, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Our server restarts on the same port and file: the session comes back, for Alice."""
    database = tmp_path / "sessions.db"
    with trio.fail_after(DEADLINE):
        async with SqliteSessionStore(database) as store, httpx.AsyncClient(timeout=10) as http:
            first = await serve_ours(nursery, jwt_verifier(provider), session_store=store)
            alice = await user_token(provider, "alice", first.url)
            bob = await user_token(provider, "bob", first.url)
            session = await initialize(http, first, alice)
            await first.shut_down()

        async with SqliteSessionStore(database) as store, httpx.AsyncClient(timeout=10) as http:
            second = await serve_ours(
                nursery, jwt_verifier(provider), port=first.port, session_store=store
            )
            assert second.url == first.url  # the same resource: the tokens are still for it
            r = await call(http, second, bob, session, "whoami")
            assert r.status_code == 404, r.text
            me = result_of(await call(http, second, alice, session, "whoami"))
            assert me["structuredContent"]["sub"] == "alice"
            assert manager_of(second.app).statistics().restored == 1
            await second.shut_down()


async def test_a_get_stream_ends_at_the_tokens_expiry_with_a_retry_hint(
    short: OidcProvider, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(DEADLINE):
        ours = await serve_ours(nursery, jwt_verifier(short), retry_ms=RETRY_MS)
        async with Browser(short) as browser:
            token = await client_token(browser, ours.url)
        exp = unverified(token)[1]["exp"]
        session = await initialize(http, ours, token)
        headers = {
            "accept": "text/event-stream",
            "mcp-session-id": session,
            "mcp-protocol-version": PROTOCOL,
            "authorization": f"Bearer {token}",
        }
        reader = SseReader()
        async with (
            http.stream("GET", ours.url, headers=headers) as r,
            trio.open_nursery() as pump,
        ):
            assert r.status_code == 200
            pump.start_soon(reader.pump, r)
            with trio.fail_after(max(0.0, exp - time.time()) + 3):
                events = await reader.rest()
            ended = time.time()
            pump.cancel_scope.cancel()
        assert exp - 0.5 <= ended <= exp + 1.5, (exp, ended)
        assert events
        assert events[-1].retry == RETRY_MS
