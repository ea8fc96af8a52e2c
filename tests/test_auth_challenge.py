"""The resource server's arithmetic without sockets: credentials, challenges, metadata, scopes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_mcp_sessions import RateLimit, ResourceServer, VerifiedToken
from trio_mcp_sessions._auth._challenge import (
    FailedVerifications,
    MalformedCredentials,
    bearer_token,
    canonical_resource,
    metadata_paths,
    metadata_url,
    missing_scopes,
    operation_scopes,
    protected_resource_metadata,
    www_authenticate,
)


class NoVerifier:
    async def verify(self, token: str) -> VerifiedToken:
        raise AssertionError("not called")


# -- credentials ---------------------------------------------------------------------


def test_no_header_or_another_scheme_is_no_credentials() -> None:
    assert bearer_token([]) is None
    assert bearer_token([b"Basic dXNlcjpwYXNz"]) is None
    assert bearer_token([b"Digest foo=bar"]) is None


@pytest.mark.parametrize("value", [b"Bearer abc.DEF-_~+/==", b"bearer abc", b"BEARER  abc "])
def test_a_bearer_token_is_taken_from_the_header(value: bytes) -> None:
    token = bearer_token([value])
    assert token is not None
    assert token == value.decode().split()[-1]


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ([b"Bearer a", b"Bearer b"], b""),  # two headers
        ([b"Bearer"], b""),  # no token
        ([b"Bearer    "], b""),
        ([b"Bearer a b"], b""),  # not a b64token
        ([b'Bearer "quoted"'], b""),
        ([b"Bearer a=b"], b""),  # '=' only at the end
        ([b"Bearer " + b"a" * (16 * 1024 + 1)], b""),
        ([], b"access_token=abc"),  # never from the query
        ([b"Bearer abc"], b"x=1&ACCESS_TOKEN=abc"),
    ],
)
def test_malformed_credentials(headers: list[bytes], query: bytes) -> None:
    with pytest.raises(MalformedCredentials):
        bearer_token(headers, query)


def test_a_query_that_only_looks_like_a_token_is_fine() -> None:
    assert bearer_token([b"Bearer abc"], b"access_token_hint=1&x=access_token") == "abc"


@given(st.binary(max_size=300))
def test_any_header_value_is_a_token_none_or_malformed(value: bytes) -> None:
    try:
        token = bearer_token([value])
    except MalformedCredentials:
        return
    assert token is None or (token and " " not in token)


# -- challenges ----------------------------------------------------------------------


def test_a_challenge_without_credentials_has_no_error() -> None:
    header = www_authenticate("https://h/.well-known/oauth-protected-resource/mcp", scopes={"a"})
    assert header == (
        b'Bearer scope="a", resource_metadata="https://h/.well-known/oauth-protected-resource/mcp"'
    )
    assert b"error" not in header


def test_a_challenge_names_the_error_every_scope_and_a_safe_description() -> None:
    header = www_authenticate(
        "https://h/m", error="insufficient_scope", scopes=["b", "a", "a"], description='x"\\\x01y'
    )
    assert header == (
        b'Bearer error="insufficient_scope", scope="a b", resource_metadata="https://h/m", '
        b'error_description="xy"'
    )


# -- the resource and its metadata ---------------------------------------------------


@pytest.mark.parametrize(
    ("given_url", "canonical"),
    [
        ("HTTPS://Example.COM/mcp/", "https://example.com/mcp"),
        ("https://example.com:8443/a/b", "https://example.com:8443/a/b"),
        ("http://[::1]:8000/mcp", "http://[::1]:8000/mcp"),
        ("https://example.com/mcp#frag", "https://example.com/mcp"),
        ("https://example.com", "https://example.com"),
    ],
)
def test_canonical_resource(given_url: str, canonical: str) -> None:
    assert canonical_resource(given_url) == canonical


@pytest.mark.parametrize(
    "bad", ["ftp://h/mcp", "/mcp", "https:///mcp", "https://h/mcp?x=1", "https://u:p@h/mcp"]
)
def test_a_resource_that_is_no_endpoint_url_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="resource"):
        canonical_resource(bad)


def test_metadata_paths_and_url() -> None:
    assert metadata_paths("https://h/public/mcp") == (
        "/.well-known/oauth-protected-resource/public/mcp",
        "/.well-known/oauth-protected-resource",
    )
    assert metadata_paths("https://h") == (
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource",
    )
    assert (
        metadata_url("https://h:8443/mcp")
        == "https://h:8443/.well-known/oauth-protected-resource/mcp"
    )


def test_the_metadata_document() -> None:
    document = protected_resource_metadata(
        "https://h/mcp", ["https://as"], {"b", "offline_access", "a"}, "Notes"
    )
    assert document == {
        "resource": "https://h/mcp",
        "authorization_servers": ["https://as"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["a", "b"],
        "resource_name": "Notes",
    }


# -- scopes --------------------------------------------------------------------------


def hierarchy(granted: str, needed: str) -> bool:
    return needed.startswith(granted + ":")


def test_scopes_with_and_without_a_hierarchy() -> None:
    needed = {"notes:read", "notes:write"}
    assert missing_scopes(needed, frozenset({"notes:read"}), None) == {"notes:write"}
    assert missing_scopes(needed, frozenset({"notes"}), None) == needed
    assert missing_scopes(needed, frozenset({"notes"}), hierarchy) == frozenset()
    assert operation_scopes(
        frozenset({"mcp"}), {"tools/call": frozenset({"call"})}, "tools/call", frozenset({"t"})
    ) == {"mcp", "call", "t"}
    assert operation_scopes(frozenset({"mcp"}), {}, None) == {"mcp"}


scope_names = st.sets(st.sampled_from(["a", "a:b", "a:b:c", "x", "x:y"]), max_size=5)


@given(scope_names, scope_names, st.booleans())
def test_missing_scopes_are_exactly_the_uncovered_ones(
    needed: set[str], granted: set[str], with_hierarchy: bool
) -> None:
    implies = hierarchy if with_hierarchy else None
    missing = missing_scopes(needed, frozenset(granted), implies)
    assert missing <= needed
    assert not (missing & granted)
    for scope in needed - missing:
        assert scope in granted or (implies is not None and any(implies(g, scope) for g in granted))
    if not with_hierarchy:
        assert missing == needed - granted


# -- failed verifications ------------------------------------------------------------


def test_failed_verifications_refuse_a_key_until_its_window_moves() -> None:
    failures = FailedVerifications(RateLimit(2, 10.0))
    assert failures.retry_after("a", 0.0) == 0
    failures.record("a", 0.0)
    failures.record("a", 1.0)
    assert failures.retry_after("a", 2.0) == pytest.approx(8.0)
    assert failures.retry_after("b", 2.0) == 0  # another key is not touched
    assert failures.retry_after("a", 10.0) == 0
    assert failures.retry_after("a", 11.5) == 0
    assert failures.tracked_keys() == 0  # an empty window is forgotten


@given(st.lists(st.integers(0, 50), max_size=200))
def test_failed_verifications_hold_a_bounded_number_of_keys(keys: list[int]) -> None:
    failures = FailedVerifications(RateLimit(1, 60.0), max_keys=8)
    for now, key in enumerate(keys):
        failures.record(str(key), float(now))
        assert failures.tracked_keys() <= 8


# -- the configuration ---------------------------------------------------------------


def test_a_resource_server_is_canonical_and_checked() -> None:
    config = ResourceServer(
        "HTTPS://H/mcp/", ["https://as"], NoVerifier(), scopes={"mcp"}, method_scopes={"x": ["y"]}
    )
    assert config.resource == "https://h/mcp"
    assert config.base_scopes == {"mcp"}
    assert config.scopes_by_method == {"x": {"y"}}
    assert config.metadata_url == "https://h/.well-known/oauth-protected-resource/mcp"
    with pytest.raises(ValueError, match="at least one"):
        ResourceServer("https://h/mcp", [], NoVerifier())
    with pytest.raises(ValueError, match="not a valid OAuth scope"):
        ResourceServer("https://h/mcp", ["https://as"], NoVerifier(), scopes={"a b"})
    with pytest.raises(TypeError, match="collection of scope names"):
        ResourceServer("https://h/mcp", ["https://as"], NoVerifier(), scopes="mcp")
    with pytest.raises(TypeError, match="verify"):
        ResourceServer("https://h/mcp", ["https://as"], object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="verify_timeout"):
        ResourceServer("https://h/mcp", ["https://as"], NoVerifier(), verify_timeout=0)


def test_a_verified_caller_names_its_principal_and_key_injectively() -> None:
    one = VerifiedToken("https://as", "a,b", "c")
    other = VerifiedToken("https://as", "a", "b,c")
    assert one.principal != other.principal
    assert one.rate_limit_key != other.rate_limit_key
    assert VerifiedToken("https://as", "u", "c1").rate_limit_key == (
        VerifiedToken("https://as", "u", "c2").rate_limit_key
    )
    assert VerifiedToken("https://as", "u").rate_limit_key != (
        VerifiedToken("https://other", "u").rate_limit_key
    )
    # No subject (client_credentials at some servers): each client its own key.
    machine_a, machine_b = (
        VerifiedToken("https://as", None, "a"),
        VerifiedToken("https://as", None, "b"),
    )
    assert machine_a.rate_limit_key != machine_b.rate_limit_key
    assert machine_a.rate_limit_key != VerifiedToken("https://as", "a").rate_limit_key
