"""IntrospectionVerifier against a real RFC 7662 endpoint (the AS stand-in on Hypercorn, 127.0.0.1).

Time is trio's MockClock (standing still unless a test jumps it); the
verifier's wall clock is bound to it, so TTLs and ``exp`` move together.
"""

from __future__ import annotations

import base64
import logging
import secrets
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest
import trio
import trio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock, wait_all_tasks_blocked

from _auth_server import RESOURCE, AuthorizationServer, serve_authorization_server
from trio_mcp_sessions import (
    IntrospectionVerifier,
    InvalidToken,
    RunnableVerifier,
    VerifierUnavailable,
)
from trio_mcp_sessions._auth._introspection import check_introspection
from trio_mcp_sessions._auth._metadata import MetadataError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

INTROSPECT = "/introspect"


@pytest.fixture
async def server(nursery: trio.Nursery, wall: Callable[[], float]) -> AuthorizationServer:
    auth = AuthorizationServer(wall=wall)
    await serve_authorization_server(nursery, auth)
    return auth


StartVerifier: TypeAlias = "Callable[..., Awaitable[IntrospectionVerifier]]"


@pytest.fixture
def start(
    nursery: trio.Nursery, server: AuthorizationServer, wall: Callable[[], float]
) -> StartVerifier:
    async def start(**options: Any) -> IntrospectionVerifier:
        options.setdefault("clock", wall)
        options.setdefault("client_id", "rs")
        options.setdefault("client_secret", server.clients["rs"])
        verifier = IntrospectionVerifier(server.issuer, RESOURCE, **options)
        await nursery.start(verifier.run)
        return verifier

    return start


def opaque(server: AuthorizationServer, **changes: Any) -> str:
    """A fresh opaque token the AS knows, with its introspection answer."""
    token = secrets.token_urlsafe(32)
    answer: dict[str, Any] = {"active": True, "token_type": "Bearer", **server.claims()}
    answer.update(changes)
    server.answers[token] = {k: v for k, v in answer.items() if v is not None}
    return token


async def refused(verifier: IntrospectionVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    return caught.value.reason


async def test_an_active_token_is_verified_with_basic_auth(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start()
    assert isinstance(verifier, RunnableVerifier)
    token = opaque(server)
    verified = await verifier.verify(token)
    assert (verified.issuer, verified.subject, verified.client_id) == (
        server.issuer,
        "alice",
        "interop",
    )
    assert verified.scopes == {"notes:read", "notes:write"}
    assert verified.audience == (RESOURCE,)
    assert verified.token_id == "jti-1"
    (asked,) = server.introspected
    assert asked.form == {"token": token, "token_type_hint": "access_token"}
    # RFC 6749 §2.3.1: the secret (with '/', '+' and ':') form-encoded inside Basic.
    assert asked.authorization is not None
    assert base64.b64decode(asked.authorization.split()[1]) == b"rs:s3cret%2F%2B%3A"
    # The endpoint was discovered through the issuer's metadata.
    assert server.hits["/.well-known/oauth-authorization-server"] == 1


async def test_client_secret_post(server: AuthorizationServer, start: StartVerifier) -> None:
    verifier = await start(
        client_auth="client_secret_post", introspection_endpoint=f"{server.issuer}/introspect"
    )
    await verifier.verify(opaque(server))
    (asked,) = server.introspected
    assert asked.authorization is None
    assert asked.form["client_id"] == "rs"
    assert server.hits["/.well-known/oauth-authorization-server"] == 0


async def test_wrong_client_credentials_are_unavailable_not_invalid(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start(client_secret="wrong")
    with pytest.raises(VerifierUnavailable, match="answered 401"):
        await verifier.verify(opaque(server))


async def test_the_refusal_matrix(server: AuthorizationServer, start: StartVerifier) -> None:
    verifier = await start(leeway=0)
    now = int(server.wall())
    cases = {
        "the token is not active": secrets.token_urlsafe(16),  # unknown to the AS
        "the token was not issued for this resource": opaque(server, aud="http://127.0.0.1/x"),
        "the token names no audience": opaque(server, aud=None),
        "the token was issued by another issuer": opaque(server, iss="https://evil.example"),
        "the token has expired": opaque(server, exp=now),
        "the token is not valid yet": opaque(server, nbf=now + 10),
        "the token is not a bearer access token": opaque(server, token_type="refresh_token"),
        "the access token is malformed": "not a token",
    }
    for reason, token in cases.items():
        assert await refused(verifier, token) == reason, reason
    stats = verifier.statistics()
    assert stats.invalid == len(cases)
    assert stats.introspections == len(cases) - 1  # a malformed token is never sent


async def test_no_aud_is_accepted_only_with_the_opt_out(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    lenient = await start(require_audience=False)
    await lenient.verify(opaque(server, aud=None))
    assert await refused(lenient, opaque(server, aud="urn:other")) == (
        "the token was not issued for this resource"
    )


async def test_active_answers_are_cached_until_the_ttl(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    verifier = await start(cache_ttl=60)
    token = opaque(server)
    for _ in range(5):
        await verifier.verify(token)
    assert len(server.introspected) == 1
    stats = verifier.statistics()
    assert (stats.cache_hits, stats.cache_misses, stats.cached_active) == (4, 1, 1)
    mock_clock.jump(60)
    await verifier.verify(token)
    assert len(server.introspected) == 2


async def test_the_cache_never_outlives_exp(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    verifier = await start(cache_ttl=60, leeway=0)
    token = opaque(server, exp=int(server.wall()) + 10)
    await verifier.verify(token)
    mock_clock.jump(10)
    server.answers[token] = {"active": False}  # the AS now says so too
    assert await refused(verifier, token) == "the token is not active"
    assert len(server.introspected) == 2


async def test_inactive_answers_are_cached_briefly(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    verifier = await start(negative_ttl=5)
    token = secrets.token_urlsafe(16)
    for _ in range(3):
        await refused(verifier, token)
    assert len(server.introspected) == 1
    assert verifier.statistics().cached_inactive == 1
    mock_clock.jump(5)
    server.answers[token] = {"active": True, **server.claims()}
    await verifier.verify(token)
    assert len(server.introspected) == 2


async def test_the_caches_are_bounded_lrus(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start(max_cached=3, max_cached_invalid=2)
    tokens = [opaque(server) for _ in range(5)]
    for token in tokens:
        await verifier.verify(token)
    await verifier.verify(tokens[2])  # the least recently used are now 3, 4, 2
    assert verifier.statistics().cached_active == 3
    assert len(server.introspected) == 5
    await verifier.verify(tokens[0])  # evicted: asked again
    assert len(server.introspected) == 6
    await verifier.verify(tokens[2])  # kept: a hit
    assert len(server.introspected) == 6
    # A flood of bad tokens fills only the inactive cache.
    for _ in range(10):
        await refused(verifier, secrets.token_urlsafe(16))
    stats = verifier.statistics()
    assert (stats.cached_active, stats.cached_inactive) == (3, 2)
    await verifier.verify(tokens[2])
    assert len(server.introspected) == 16


async def test_the_cache_is_keyed_by_a_hash_never_the_token(
    server: AuthorizationServer, start: StartVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mcp_sessions")
    verifier = await start()
    good, bad = opaque(server), secrets.token_urlsafe(16)
    verified = await verifier.verify(good)
    reason = await refused(verifier, bad)
    held = [*verifier._active._entries, *verifier._inactive._entries]
    assert all(isinstance(k, bytes) and len(k) == 32 for k in held)
    texts = [repr(verifier), repr(verified), reason, *(r.getMessage() for r in caplog.records)]
    assert caplog.records
    for token in (good, bad):
        assert not any(token in text for text in texts)


async def test_concurrent_verifications_of_one_token_share_one_request(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start()
    token = opaque(server)
    gate = server.hold[INTROSPECT] = trio.Event()
    done: list[str] = []

    async def one() -> None:
        verified = await verifier.verify(token)
        done.append(verified.subject or "")

    async with trio.open_nursery() as nursery:
        for _ in range(30):
            nursery.start_soon(one)
        for _ in range(100_000):
            if server.hits[INTROSPECT]:
                break
            await trio.lowlevel.checkpoint()
        await wait_all_tasks_blocked()
        gate.set()
    assert done == ["alice"] * 30
    assert server.hits[INTROSPECT] == 1


async def test_an_unreachable_or_failing_endpoint_is_unavailable_and_not_cached(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start(introspection_endpoint=f"{server.issuer}/introspect")
    token = opaque(server)
    server.fail[INTROSPECT] = 503
    with pytest.raises(VerifierUnavailable, match="answered 503"):
        await verifier.verify(token)
    server.fail.clear()
    server.raw[INTROSPECT] = b"[1, 2]"
    with pytest.raises(VerifierUnavailable, match="not a JSON object"):
        await verifier.verify(token)
    server.raw.clear()
    await verifier.verify(token)
    server.stop.cancel()
    other = opaque(server)
    with pytest.raises(VerifierUnavailable, match="unreachable"):
        await verifier.verify(other)
    stats = verifier.statistics()
    assert (stats.unavailable, stats.introspection_failures, stats.verified) == (3, 3, 1)


async def test_a_400_about_the_token_is_invalid_one_about_us_unavailable(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    """oidc-provider answers its own JWTs with 400 ``unsupported_token_type``.

    That is the AS declining the token (401, cached as inactive), not an
    outage: as a 503 the client would retry forever, each retry a request.
    """
    verifier = await start(introspection_endpoint=f"{server.issuer}/introspect")
    server.fail[INTROSPECT] = 400
    for code in ("unsupported_token_type", "invalid_token"):
        server.raw[INTROSPECT] = b'{"error": "%s"}' % code.encode()
        token = opaque(server)
        for _ in range(2):
            assert await refused(verifier, token) == "the token is not active"
    assert verifier.statistics().introspections == 2  # the second try of each was cached
    for body in (b'{"error": "invalid_client"}', b'{"error": 1}', b"not json"):
        server.raw[INTROSPECT] = body
        with pytest.raises(VerifierUnavailable, match="answered 400"):
            await verifier.verify(opaque(server))
    stats = verifier.statistics()
    assert (stats.invalid, stats.unavailable, stats.introspection_failures) == (4, 3, 3)


async def test_metadata_for_another_issuer_is_refused(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    server.metadata_changes["issuer"] = f"{server.issuer}/other"
    verifier = await start()
    with pytest.raises(VerifierUnavailable, match="another issuer"):
        await verifier.verify(opaque(server))
    assert server.hits[INTROSPECT] == 0


async def test_verify_without_run_is_unavailable(autojump_clock: MockClock) -> None:
    verifier = IntrospectionVerifier(
        "http://127.0.0.1:9", RESOURCE, client_id="rs", client_secret="x", start_timeout=2
    )
    with pytest.raises(VerifierUnavailable, match="not running"):
        await verifier.verify("abc")


answers = st.dictionaries(
    st.sampled_from(["active", "aud", "iss", "exp", "nbf", "scope", "sub", "token_type", "x"]),
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.lists(st.text(max_size=5) | st.integers(), max_size=3)
    | st.just(RESOURCE),
    max_size=9,
)


@settings(max_examples=300, deadline=None)
@given(answers | st.lists(st.integers(), max_size=2) | st.text(max_size=5))
def test_any_answer_is_verified_or_refused_cleanly(answer: Any) -> None:
    try:
        verified = check_introspection(
            answer,
            issuer="https://as.example",
            audiences=(RESOURCE,),
            now=1_000.0,
            leeway=0,
            require_audience=True,
        )
    except (InvalidToken, MetadataError):
        return
    assert answer["active"] is True
    assert RESOURCE in verified.audience


async def test_requests_in_flight_are_bounded(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start(max_inflight=3)
    server.hold[INTROSPECT] = gate = trio.Event()
    tokens = [opaque(server) for _ in range(4)]
    async with trio.open_nursery() as nursery:
        for token in tokens[:3]:
            nursery.start_soon(verifier.verify, token)
        await wait_all_tasks_blocked()
        assert verifier.statistics().inflight == 3
        with pytest.raises(VerifierUnavailable, match="too many introspections"):
            await verifier.verify(tokens[3])
        # The same token joins its request: no new one needed.
        nursery.start_soon(verifier.verify, tokens[0])
        await wait_all_tasks_blocked()
        gate.set()
    stats = verifier.statistics()
    assert (stats.refused_busy, stats.inflight, stats.verified) == (1, 0, 4)
    await verifier.verify(tokens[3])
