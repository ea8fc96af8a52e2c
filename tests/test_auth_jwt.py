"""JwtVerifier against a real authorization server stand-in (Hypercorn on 127.0.0.1, joserfc keys).

Time is trio's: a MockClock that stands still unless a test jumps it, and
the verifier's wall clock is bound to it, so every interval, backoff and
``exp`` moves only when the test says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import random
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey
from trio.testing import MockClock, wait_all_tasks_blocked

from _auth_server import (
    RESOURCE,
    AuthorizationServer,
    b64,
    closed_port_url,
    serve_authorization_server,
)
from _harness import Probe, make_server
from conftest import INIT_HEADERS, StartServer, initialize_body
from trio_mcp_sessions import (
    InvalidToken,
    JwtVerifier,
    ResourceServer,
    RunnableVerifier,
    StreamableHTTPApp,
    VerifiedToken,
    VerifierUnavailable,
)
from trio_mcp_sessions._auth._jwt import (
    DEFAULT_ALGORITHMS,
    check_claims,
    parse_key_set,
    read_token,
    verify_signed,
)
from trio_mcp_sessions._auth._metadata import MetadataError, metadata_urls, parse_metadata

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx

JWKS = "/jwks"
RFC8414 = "/.well-known/oauth-authorization-server"
OIDC = "/.well-known/openid-configuration"


@pytest.fixture
async def server(nursery: trio.Nursery, wall: Callable[[], float]) -> AuthorizationServer:
    auth = AuthorizationServer(wall=wall)
    auth.add_key("RSA", "rsa-1")
    auth.add_key("EC", "ec-1")
    auth.add_key("OKP", "ed-1")
    await serve_authorization_server(nursery, auth)
    return auth


StartVerifier: TypeAlias = "Callable[..., Awaitable[JwtVerifier]]"


@pytest.fixture
def start(
    nursery: trio.Nursery, server: AuthorizationServer, wall: Callable[[], float]
) -> StartVerifier:
    async def start(**options: Any) -> JwtVerifier:
        options.setdefault("clock", wall)
        verifier = JwtVerifier(options.pop("issuer", server.issuer), RESOURCE, **options)
        await nursery.start(verifier.run)
        return verifier

    return start


async def until(condition: Callable[[], bool], limit: int = 100_000) -> None:
    """Yield until *condition* holds (trio's clock stands still, so no sleeping)."""
    for _ in range(limit):
        if condition():
            return
        await trio.lowlevel.checkpoint()
    raise AssertionError("the condition never held")


async def refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    return caught.value.reason


# -- accepted tokens ------------------------------------------------------------------


async def test_a_good_token_of_each_key_type_is_verified(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start()
    assert isinstance(verifier, RunnableVerifier)
    for key in server.signing:
        verified = await verifier.verify(server.token(key))
        assert verified == VerifiedToken(
            issuer=server.issuer,
            subject="alice",
            client_id="interop",
            scopes=frozenset({"notes:read", "notes:write"}),
            audience=(RESOURCE,),
            expires_at=float(server.claims()["exp"]),
            token_id="jti-1",
        )
        assert verified.claims["sub"] == "alice"
    # Discovered once through RFC 8414, the key set fetched once for all three.
    assert server.hits[RFC8414] == 1
    assert server.hits[JWKS] == 1
    stats = verifier.statistics()
    assert (stats.verified, stats.invalid, stats.jwks_fetches, stats.cached_keys) == (3, 0, 1, 3)


async def test_audience_lists_scp_azp_and_ps256(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start()
    verified = await verifier.verify(
        server.token(
            alg="PS256",
            aud=["https://other.example", RESOURCE],
            scope=None,
            scp=["a", "b"],
            client_id=None,
            azp="azp-client",
        )
    )
    assert verified.audience == ("https://other.example", RESOURCE)
    assert verified.scopes == {"a", "b"}
    assert verified.client_id == "azp-client"
    # Entra sends scp as one space-separated string.
    assert (await verifier.verify(server.token(scope=None, scp="x y"))).scopes == {"x", "y"}


async def test_several_configured_audiences(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = JwtVerifier(server.issuer, [RESOURCE, "urn:other"])
    assert verifier.audiences == (RESOURCE, "urn:other")
    other = await start()
    assert await refused(other, server.token(aud="urn:other")) == (
        "the token was not issued for this resource"
    )


async def test_the_openid_configuration_is_the_fallback(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    server.fail[RFC8414] = 404
    verifier = await start()
    await verifier.verify(server.token())
    assert server.hits[RFC8414] == 1
    assert server.hits[OIDC] == 1


async def test_an_explicit_jwks_uri_skips_discovery(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start(jwks_uri=f"{server.issuer}/jwks")
    await verifier.verify(server.token())
    assert server.hits[RFC8414] == server.hits[OIDC] == 0


# -- the negative matrix ----------------------------------------------------------------


async def test_the_claims_matrix(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    verifier = await start(leeway=30)
    now = int(server.wall())
    cases = {
        "the token has expired": server.token(exp=now - 31),
        "the token is not valid yet": server.token(nbf=now + 31),
        "the token was issued in the future": server.token(iat=now + 31),
        "the token was issued by another issuer": server.token(iss="http://127.0.0.1:1"),
        "the token was not issued for this resource": server.token(aud="http://127.0.0.1/other"),
        "the token names no audience": server.token(aud=None),
        "the token has no valid expiry": server.token(exp=None),
        "the token's claims are malformed": server.token(sub=7),
    }
    for reason, token in cases.items():
        assert await refused(verifier, token) == reason, reason
    # Inside the leeway, skewed clocks still agree.
    await verifier.verify(server.token(exp=now - 29, nbf=now + 29, iat=now + 29))
    # And a good token expires on trio's clock.
    token = server.token(exp=now + 100)
    await verifier.verify(token)
    mock_clock.jump(131)
    assert await refused(verifier, token) == "the token has expired"
    assert verifier.statistics().invalid == len(cases) + 1


async def test_a_wrong_issuer_costs_no_fetch(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start()
    await refused(verifier, server.token(iss="https://evil.example"))
    assert server.hits[JWKS] == 0


async def test_typ_is_at_jwt_unless_opted_out(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    strict = await start()
    lenient = await start(require_typ=False)
    for typ in ("JWT", None, "jwt"):
        token = server.token(header={"typ": typ})
        assert await refused(strict, token) == "the token is not a JWT access token (typ)"
        await lenient.verify(token)
    await strict.verify(server.token(header={"typ": "application/at+JWT"}))
    # Other JWT types are no access tokens even with the opt-out.
    for typ in ("dpop+jwt", "secevent+jwt"):
        token = server.token(header={"typ": typ})
        assert await refused(lenient, token) == "the token is not a JWT access token (typ)"


async def test_alg_none_is_refused_without_a_fetch(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start()
    claims = server.claims()
    for signature in ("", "AAAA"):
        token = f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(claims)}.{signature}"
        await refused(verifier, token)
    assert server.hits[JWKS] == 0


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(claims)}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64(signature)}"


async def test_hs256_signed_with_the_public_key_is_refused(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    """The classic confusion: the public key (PEM or JWK JSON) as an HMAC secret."""
    verifier = await start()
    await verifier.verify(server.token())  # the key set is loaded
    rsa = server.signing[0]
    assert isinstance(rsa, RSAKey)
    secrets = [rsa.as_pem(private=False), json.dumps(rsa.as_dict(private=False)).encode()]
    for secret in secrets:
        token = _hs256({"alg": "HS256", "kid": rsa.kid, "typ": "at+jwt"}, server.claims(), secret)
        assert await refused(verifier, token) == "the token's signature algorithm is not allowed"
    with pytest.raises(ValueError, match="asymmetric"):
        JwtVerifier(server.issuer, RESOURCE, algorithms=["RS256", "HS256"])
    with pytest.raises(ValueError, match="Ed25519"):
        JwtVerifier(server.issuer, RESOURCE, algorithms=["EdDSA"])


async def test_a_token_signed_by_another_key_with_a_known_kid_is_refused(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    verifier = await start()
    impostor = RSAKey.generate_key(2048, {"kid": "rsa-1"})
    assert await refused(verifier, server.token(impostor)) == "the token's signature is not valid"
    # A key of the wrong type for the algorithm, by kid: no fetch, refused.
    ec = server.signing[1]
    assert await refused(verifier, server.token(ec, header={"kid": "rsa-1"})) == (
        "no key of the issuer fits the token's algorithm"
    )
    assert server.hits[JWKS] == 1


async def test_an_unknown_kid_refetches_once_per_interval(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    verifier = await start(refetch_interval=30)
    await verifier.verify(server.token())
    assert server.hits[JWKS] == 1
    mock_clock.jump(30)
    stranger = RSAKey.generate_key(2048, {"kid": "nobody"})
    reason = "the token's key id is not one of the issuer's keys"
    assert await refused(verifier, server.token(stranger)) == reason
    assert server.hits[JWKS] == 2  # exactly one refetch
    mock_clock.jump(29)
    assert await refused(verifier, server.token(stranger)) == reason
    assert server.hits[JWKS] == 2  # within the interval: no fetch
    assert verifier.statistics().refetches_suppressed == 1
    mock_clock.jump(1)
    assert await refused(verifier, server.token(stranger)) == reason
    assert server.hits[JWKS] == 3


async def test_key_rotation_fetches_the_new_kid(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    verifier = await start()
    old = server.signing[0]
    await verifier.verify(server.token(old))
    mock_clock.jump(30)
    server.signing = [server.add_key("RSA", "rsa-2")]
    await verifier.verify(server.token(server.signing[0]))
    assert server.hits[JWKS] == 2
    # The old key is gone from the fetched set.
    assert await refused(verifier, server.token(old)) == (
        "the token's key id is not one of the issuer's keys"
    )


async def test_a_rotation_soon_after_the_first_load_still_refetches(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    """The interval is between refetches for unknown kids, not since the first load.

    Counting from the first load refused the new key's tokens (401) for up to
    ``refetch_interval`` after a rotation that came soon after it.
    """
    verifier = await start(refetch_interval=30)
    old = server.signing[0]
    await verifier.verify(server.token(old))
    mock_clock.jump(1)
    server.signing = [server.add_key("RSA", "rsa-2")]
    await verifier.verify(server.token(server.signing[0]))
    assert server.hits[JWKS] == 2
    reason = "the token's key id is not one of the issuer's keys"
    assert await refused(verifier, server.token(old)) == reason
    assert server.hits[JWKS] == 2  # that refetch started the interval
    assert verifier.statistics().refetches_suppressed == 1


async def test_keys_older_than_max_age_are_refreshed_in_the_background(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    verifier = await start(jwks_max_age=300)
    await verifier.verify(server.token())
    assert verifier.statistics().cached_keys == 3
    mock_clock.jump(300)
    revoked = server.signing.pop(0)  # the key is revoked at the AS
    await verifier.verify(server.token(revoked))  # the old set still has it; refreshes
    await until(lambda: verifier.statistics().cached_keys == 2)
    assert server.hits[JWKS] == 2
    mock_clock.jump(30)
    assert await refused(verifier, server.token(revoked)) == (
        "the token's key id is not one of the issuer's keys"
    )


async def test_concurrent_unknown_kids_share_one_fetch(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    verifier = await start()
    await verifier.verify(server.token())
    mock_clock.jump(30)
    gate = server.hold[JWKS] = trio.Event()
    new = server.add_key("EC", "ec-new")
    stranger = RSAKey.generate_key(2048, {"kid": "nobody"})
    outcomes: list[str] = []

    async def one(token: str) -> None:
        try:
            await verifier.verify(token)
            outcomes.append("ok")
        except InvalidToken:
            outcomes.append("invalid")

    async with trio.open_nursery() as waiting:
        for i in range(50):
            waiting.start_soon(one, server.token(new if i % 2 else stranger))
        await until(lambda: server.hits[JWKS] == 2)
        await wait_all_tasks_blocked()
        gate.set()
    assert server.hits[JWKS] == 2  # the first load and one shared refetch
    assert sorted(outcomes) == ["invalid"] * 25 + ["ok"] * 25


# -- the authorization server misbehaves -----------------------------------------------


async def test_metadata_for_another_issuer_is_refused(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    server.metadata_changes["issuer"] = "https://evil.example"
    verifier = await start()
    with pytest.raises(VerifierUnavailable, match="another issuer"):
        await verifier.verify(server.token())
    assert server.hits[JWKS] == 0
    assert verifier.statistics().jwks_fetch_failures == 1


async def test_an_unreachable_issuer_is_unavailable_then_backs_off(
    wall: Callable[[], float], nursery: trio.Nursery, mock_clock: MockClock
) -> None:
    issuer = closed_port_url()
    auth = AuthorizationServer(issuer=issuer, wall=wall)
    auth.add_key()
    verifier = JwtVerifier(issuer, RESOURCE, clock=wall)
    await nursery.start(verifier.run)
    with pytest.raises(VerifierUnavailable, match="unreachable") as caught:
        await verifier.verify(auth.token())
    assert "unreachable" in caught.value.reason
    # Within the backoff the next one fails at once, with a Retry-After.
    with pytest.raises(VerifierUnavailable) as again:
        await verifier.verify(auth.token())
    assert 0 < again.value.retry_after <= 5
    assert verifier.statistics().jwks_fetches == 1
    mock_clock.jump(5)
    with pytest.raises(VerifierUnavailable):
        await verifier.verify(auth.token())
    stats = verifier.statistics()
    assert (stats.jwks_fetches, stats.jwks_fetch_failures, stats.unavailable) == (2, 2, 3)


@pytest.mark.parametrize(
    ("path", "status", "raw"),
    [
        (JWKS, 503, None),
        (JWKS, 200, b"<html>not json</html>"),
        (JWKS, 200, b'{"keys": "nope"}'),
        (JWKS, 200, b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'),
        (RFC8414, 500, None),
        (RFC8414, 200, b"[]"),
    ],
)
async def test_a_broken_key_set_is_unavailable_not_invalid(
    server: AuthorizationServer,
    start: StartVerifier,
    path: str,
    status: int,
    raw: bytes | None,
) -> None:
    if status != 200:
        server.fail[path] = status
    if raw is not None:
        server.raw[path] = raw
    if path == RFC8414 and raw is not None:
        server.raw[OIDC] = raw
    verifier = await start()
    with pytest.raises(VerifierUnavailable):
        await verifier.verify(server.token())


async def test_an_unknown_kid_while_the_issuer_is_down_is_unavailable(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    verifier = await start()
    await verifier.verify(server.token())
    mock_clock.jump(30)
    server.fail[JWKS] = 502
    new = server.add_key("RSA", "rsa-new")
    with pytest.raises(VerifierUnavailable):
        await verifier.verify(server.token(new))
    # Known keys keep working meanwhile.
    await verifier.verify(server.token())


async def test_oversized_and_overfull_key_sets_are_refused(
    server: AuthorizationServer, start: StartVerifier
) -> None:
    small = await start(max_response_bytes=4096)
    for _ in range(40):
        server.add_key("EC")
    assert len(json.dumps(server.jwks())) > 4096
    with pytest.raises(VerifierUnavailable, match="more than 4096 bytes"):
        await small.verify(server.token())
    few = await start(max_keys=5)
    with pytest.raises(VerifierUnavailable, match="more than 5 keys"):
        await few.verify(server.token())


async def test_a_slow_issuer_hits_the_deadline(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    server.hold[JWKS] = trio.Event()  # never set
    verifier = await start(http_timeout=2)
    async with trio.open_nursery() as nursery:

        async def verify() -> None:
            with pytest.raises(VerifierUnavailable, match="did not answer within 2s"):
                await verifier.verify(server.token())

        nursery.start_soon(verify)
        await until(lambda: server.hits[JWKS] == 1)
        await wait_all_tasks_blocked()
        mock_clock.jump(2)


# -- the lifecycle ---------------------------------------------------------------------


async def test_verify_waits_for_run_to_start(
    server: AuthorizationServer, nursery: trio.Nursery, wall: Callable[[], float]
) -> None:
    verifier = JwtVerifier(server.issuer, RESOURCE, clock=wall)
    done = trio.Event()

    async def verify() -> None:
        await verifier.verify(server.token())
        done.set()

    nursery.start_soon(verify)
    await wait_all_tasks_blocked()
    assert not done.is_set()
    await nursery.start(verifier.run)
    await done.wait()
    with pytest.raises(RuntimeError, match="only once"):
        await verifier.run()


async def test_verify_without_run_is_unavailable_after_start_timeout(
    autojump_clock: MockClock,
) -> None:
    verifier = JwtVerifier("http://127.0.0.1:9", RESOURCE, start_timeout=3)
    token = f"{b64({'alg': 'RS256', 'typ': 'at+jwt'})}.{b64({'iss': 'http://127.0.0.1:9'})}.AAAA"
    start = trio.current_time()
    with pytest.raises(VerifierUnavailable, match="not running"):
        await verifier.verify(token)
    assert trio.current_time() - start == pytest.approx(3)


async def test_verify_after_run_ended_is_unavailable(
    server: AuthorizationServer, wall: Callable[[], float]
) -> None:
    verifier = JwtVerifier(server.issuer, RESOURCE, clock=wall)
    async with trio.open_nursery() as nursery:
        await nursery.start(verifier.run)
        await verifier.verify(server.token())
        nursery.cancel_scope.cancel()
    with pytest.raises(VerifierUnavailable, match="stopped"):
        await verifier.verify(server.token())


async def test_tokens_never_reach_logs_reprs_or_errors(
    server: AuthorizationServer, start: StartVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mcp_sessions")
    verifier = await start()
    tokens = [
        server.token(),
        server.token(exp=1),
        server.token(aud="x"),
        server.token(RSAKey.generate_key(2048, {"kid": "rsa-1"})),
        "garbage." + server.token().split(".", 1)[1],
    ]
    texts = [repr(verifier)]
    for token in tokens:
        try:
            texts.append(repr(await verifier.verify(token)))
        except InvalidToken as exc:
            texts += [str(exc), repr(exc)]
    texts += [r.getMessage() for r in caplog.records]
    assert len(caplog.records) >= 4
    for token in tokens:
        for text in texts:
            assert token not in text
            assert token.split(".")[2] not in text


# -- sans-IO: discovery URLs, metadata, hostile input ---------------------------------


def test_metadata_urls_insert_and_append() -> None:
    assert metadata_urls("https://as.example") == (
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    )
    assert metadata_urls("https://as.example/tenant/1/") == (
        "https://as.example/.well-known/oauth-authorization-server/tenant/1",
        "https://as.example/.well-known/openid-configuration/tenant/1",
        "https://as.example/tenant/1/.well-known/openid-configuration",
    )
    for bad in ("as.example", "ftp://as.example", "https://as.example/?q", "https://a#f"):
        with pytest.raises(MetadataError):
            metadata_urls(bad)


def test_metadata_issuer_must_match_exactly() -> None:
    document = {"issuer": "https://as.example", "jwks_uri": "https://as.example/jwks"}
    assert parse_metadata(document, "https://as.example").jwks_uri == "https://as.example/jwks"
    for issuer in ("https://as.example/", "https://AS.example", "https://as.example/x"):
        with pytest.raises(MetadataError, match="another issuer"):
            parse_metadata(document, issuer)
    with pytest.raises(MetadataError, match="jwks_uri"):
        parse_metadata({**document, "jwks_uri": "javascript:alert(1)"}, "https://as.example")


ISSUER = "https://as.example"
_KEY = RSAKey.generate_key(2048, {"kid": "k"})
_KEYS = parse_key_set({"keys": [_KEY.as_dict(private=False)]}, max_keys=10)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from([*DEFAULT_ALGORITHMS, "none", "HS256", "EdDSA"]) | json_values,
        "kid": st.just("k") | json_values,
        "typ": st.sampled_from(["at+jwt", "JWT"]) | json_values,
        "crit": json_values,
        "b64": json_values,
        "jwk": json_values,
    },
)
claims = st.fixed_dictionaries(
    {"iss": st.just(ISSUER) | json_values},
    optional={
        k: json_values | st.integers() | st.just(RESOURCE)
        for k in ("aud", "exp", "nbf", "iat", "sub", "scope", "scp", "client_id", "jti")
    },
)
segments = st.text(alphabet="ABCDEFabcdef0123456789-_", min_size=1, max_size=40)


def _only_invalid(token: str) -> None:
    try:
        header = read_token(token, algorithms=DEFAULT_ALGORITHMS, require_typ=False, issuer=ISSUER)
        verify_signed(
            token,
            header,
            _KEYS,
            issuer=ISSUER,
            audiences=(RESOURCE,),
            algorithms=DEFAULT_ALGORITHMS,
            now=1_800_000_000.0,
            leeway=60,
        )
    except InvalidToken as exc:
        reason = exc.reason
        assert len(token) < 12 or token not in reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_garbage_strings_are_only_ever_invalid(token: str) -> None:
    _only_invalid(token)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers, claims, segments | st.just(""))
def test_random_headers_and_claims_are_only_ever_invalid(
    header: dict[str, Any], body: dict[str, Any], signature: str
) -> None:
    _only_invalid(f"{b64(header)}.{b64(body)}.{signature}")


@settings(max_examples=200, deadline=None)
@given(claims)
def test_signed_random_claims_are_verified_or_invalid(body: dict[str, Any]) -> None:
    """Properly signed, so the claims checks themselves face the garbage."""
    from joserfc import jwt

    token = jwt.encode({"alg": "RS256", "kid": "k", "typ": "at+jwt"}, dict(body), _KEY)
    try:
        header = read_token(token, algorithms=DEFAULT_ALGORITHMS, require_typ=True, issuer=ISSUER)
        verified = verify_signed(
            token,
            header,
            _KEYS,
            issuer=ISSUER,
            audiences=(RESOURCE,),
            algorithms=DEFAULT_ALGORITHMS,
            now=1_800_000_000.0,
            leeway=60,
        )
    except InvalidToken:
        return
    assert verified.issuer == ISSUER
    assert RESOURCE in verified.audience
    assert verified.expires_at is not None
    assert math.isfinite(verified.expires_at)
    assert verified.expires_at + 60 > 1_800_000_000.0


def test_check_claims_needs_exp_and_aud() -> None:
    base = {"iss": ISSUER, "aud": RESOURCE, "exp": 2e9}
    assert check_claims(base, issuer=ISSUER, audiences=(RESOURCE,), now=1e9, leeway=0)
    for change in ({"exp": True}, {"exp": float("nan")}, {"aud": [1]}, {"scope": ["a", 1]}):
        with pytest.raises(InvalidToken):
            check_claims(
                {**base, **change}, issuer=ISSUER, audiences=(RESOURCE,), now=1e9, leeway=0
            )


async def test_hostile_tokens_end_to_end_are_only_invalid_and_cost_one_refetch(
    server: AuthorizationServer, start: StartVerifier, mock_clock: MockClock
) -> None:
    """The whole verify() path, key lookup and refetch included, against a seeded corpus."""
    verifier = await start()
    await verifier.verify(server.token())
    mock_clock.jump(30)
    rng = random.Random(1468)
    good = server.token().split(".")
    pieces: list[Any] = [None, 0, "", "k", "rsa-1", "ec-1", "RS256", "ES256", [], {}, "a" * 300]
    tokens = []
    for _ in range(300):
        header = {
            "alg": rng.choice([*DEFAULT_ALGORITHMS, "none", "HS256", *pieces]),
            "kid": rng.choice([*pieces, f"kid-{rng.randrange(10**6)}"]),
            "typ": rng.choice(["at+jwt", "JWT", *pieces]),
        }
        body = server.claims(**{rng.choice(["aud", "exp", "sub", "iss"]): rng.choice(pieces)})
        signature = rng.choice([good[2], "AAAA", good[2][::-1], ""])
        tokens.append(f"{b64(header)}.{b64(body)}.{signature}")
        tokens.append(rng.choice([".".join(good[:2]), good[0] + "..", "x" * rng.randrange(40)]))
    for token in tokens:
        with pytest.raises(InvalidToken):
            await verifier.verify(token)
    assert server.hits[JWKS] == 2  # one refetch for all the unknown kids
    assert verifier.statistics().invalid == len(tokens)


# -- in the app: the transport runs the verifier and maps its answers -----------------


async def test_the_app_runs_the_verifier_and_maps_its_answers(
    server: AuthorizationServer,
    wall: Callable[[], float],
    start_server: StartServer,
    http: httpx.AsyncClient,
    mock_clock: MockClock,
) -> None:
    verifier = JwtVerifier(server.issuer, RESOURCE, clock=wall)
    auth = ResourceServer(RESOURCE, [server.issuer], verifier, scopes={"notes:read"})
    url = await start_server(StreamableHTTPApp(make_server(Probe()), auth=auth))

    async def initialize(token: str) -> httpx.Response:
        headers = {**INIT_HEADERS, "authorization": f"Bearer {token}"}
        return await http.post(url, json=initialize_body(), headers=headers)

    ok = await initialize(server.token())
    assert ok.status_code == 200, ok.text
    assert ok.headers["mcp-session-id"]
    wrong = await initialize(server.token(aud="http://127.0.0.1/other"))
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    narrow = await initialize(server.token(scope="notes:write"))
    assert narrow.status_code == 403
    assert 'scope="notes:read"' in narrow.headers["www-authenticate"]
    # A new kid while the AS is failing: 503 with Retry-After, never a 401.
    mock_clock.jump(30)
    server.fail[JWKS] = 503
    late = server.add_key("RSA", "rsa-late")
    down = await initialize(server.token(late, scope="notes:read"))
    assert down.status_code == 503, down.text
    assert int(down.headers["retry-after"]) >= 1
    assert "www-authenticate" not in down.headers
    server.fail.clear()
    mock_clock.jump(30)
    assert (await initialize(server.token(late, scope="notes:read"))).status_code == 200
    assert verifier.statistics().verified == 3


jwk_values = json_values | st.sampled_from(["AQAB", "P-256", "Ed25519", "sig", "RS256", "AAAA"])
jwks_documents = st.fixed_dictionaries(
    {
        "keys": st.lists(
            st.fixed_dictionaries(
                {"kty": st.sampled_from(["RSA", "EC", "OKP", "oct"]) | jwk_values},
                optional={
                    k: jwk_values for k in ("n", "e", "crv", "x", "y", "kid", "use", "alg", "d")
                },
            ),
            max_size=4,
        )
    }
)


@settings(max_examples=500, deadline=None)
@given(jwks_documents | json_values)
def test_any_key_set_document_parses_or_is_refused_cleanly(document: Any) -> None:
    """A key set comes from the network: nothing in it may raise past the fetch."""
    try:
        keys = parse_key_set(document, max_keys=10)
    except MetadataError:
        return
    assert 1 <= len(keys) <= 10


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"issuer": st.just(ISSUER) | json_values},
        optional={
            "jwks_uri": st.just("https://as.example/jwks") | json_values,
            "introspection_endpoint": json_values,
            "introspection_endpoint_auth_methods_supported": json_values,
        },
    )
    | json_values
)
def test_any_metadata_document_parses_or_is_refused_cleanly(document: Any) -> None:
    try:
        metadata = parse_metadata(document, ISSUER)
    except MetadataError:
        return
    assert metadata.issuer == ISSUER
