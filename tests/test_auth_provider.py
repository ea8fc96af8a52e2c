"""The auth tests' authorization server is what they assume it is.

``tests/oidc/provider.mjs`` (``oidc-provider`` 9.13.3 on 127.0.0.1) and the
headless :class:`~_oidc_provider.Browser` are the ground truth of every auth
test: here each fact those tests build on is checked against the running
server, with signatures verified by PyJWT (a test dependency through ``mcp``)
over keys fetched from the server's ``jwks_uri``.  One server serves the
module; the key-rotation test starts its own.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
import trio

from _conformance_tools import ConformanceTools, run_conformance_async
from _oidc_provider import (
    INTEROP_CLIENT,
    REDIRECT_URI,
    SVC_CLIENT,
    Browser,
    LoginError,
    OidcProvider,
    Pkce,
    oidc_provider,
    provider_tools,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

RESOURCE = "http://127.0.0.1:8123/mcp"
OTHER = "http://127.0.0.1:8123/other"
OPAQUE = "http://127.0.0.1:8123/opaque"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def tools() -> ConformanceTools:
    return provider_tools()


@pytest.fixture(scope="module")
def provider(tools: ConformanceTools) -> Iterator[OidcProvider]:
    with OidcProvider(tools) as running:
        yield running


@pytest.fixture
async def browser(provider: OidcProvider) -> AsyncIterator[Browser]:
    async with Browser(provider) as agent:
        yield agent


async def verified(provider: OidcProvider, token: str, audience: str) -> dict[str, Any]:
    """*token*'s claims once its signature, ``iss``, ``aud`` and ``exp`` check out."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        metadata = (await http.get(provider.metadata_url)).raise_for_status().json()
        assert metadata["issuer"] == provider.issuer
        jwks = (await http.get(metadata["jwks_uri"])).raise_for_status().json()
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key.key,
        algorithms=["ES256"],
        audience=audience,
        issuer=provider.issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    return claims


async def test_metadata_names_the_endpoints_the_tests_use(provider: OidcProvider) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        metadata = (await http.get(provider.metadata_url)).raise_for_status().json()
    assert metadata["issuer"] == provider.issuer
    assert provider.issuer.startswith("http://127.0.0.1:")
    assert metadata["authorization_endpoint"] == provider.authorization_endpoint
    assert metadata["token_endpoint"] == provider.token_endpoint
    assert metadata["introspection_endpoint"] == provider.introspection_endpoint
    assert metadata["registration_endpoint"] == provider.registration_endpoint
    assert metadata["jwks_uri"] == provider.jwks_uri
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert {"notes:read", "notes:write", "offline_access"} <= set(metadata["scopes_supported"])
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        metadata["grant_types_supported"]
    )


async def test_client_credentials_gives_an_rfc9068_jwt_for_the_resource(
    provider: OidcProvider, browser: Browser
) -> None:
    body = await browser.client_credentials(resource=RESOURCE, scope="notes:read")
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "notes:read"
    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert header["kid"] in provider.kids
    claims = await verified(provider, token, RESOURCE)
    assert claims["aud"] == RESOURCE
    assert claims["iss"] == provider.issuer
    assert claims["client_id"] == SVC_CLIENT
    assert claims["sub"] == SVC_CLIENT
    assert claims["scope"] == "notes:read"
    assert claims["exp"] - claims["iat"] == provider.access_token_ttl

    # A token for another resource is signed by the same keys but is not for RESOURCE.
    other = (await browser.client_credentials(resource=OTHER))["access_token"]
    assert (await verified(provider, other, OTHER))["aud"] == OTHER
    with pytest.raises(jwt.InvalidAudienceError):
        await verified(provider, other, RESOURCE)


async def test_unknown_scopes_are_dropped_and_foreign_resources_refused(
    provider: OidcProvider, browser: Browser
) -> None:
    """A scope the resource does not know is left out (so a test can mint a scopeless token)."""
    body = await browser.client_credentials(resource=RESOURCE, scope="notes:read notes:admin")
    assert body["scope"] == "notes:read"
    scopeless = await browser.client_credentials(resource=RESOURCE, scope="notes:admin")
    assert "scope" not in scopeless
    assert "scope" not in await verified(provider, scopeless["access_token"], RESOURCE)
    with pytest.raises(LoginError, match="invalid_target"):
        await browser.client_credentials(resource="http://example.invalid/mcp")


async def test_an_opaque_token_introspects_active_and_a_jwt_cannot(
    provider: OidcProvider, browser: Browser
) -> None:
    body = await browser.client_credentials(resource=OPAQUE, scope="notes:read notes:write")
    token = body["access_token"]
    assert token.count(".") == 0  # not a JWT
    introspected = await browser.introspect(token)
    assert introspected["active"] is True
    assert introspected["aud"] == OPAQUE
    assert introspected["iss"] == provider.issuer
    assert introspected["client_id"] == SVC_CLIENT
    assert introspected["scope"] == "notes:read notes:write"
    assert introspected["exp"] - introspected["iat"] == provider.access_token_ttl

    assert await browser.introspect("not-a-token") == {"active": False}
    jwt_token = (await browser.client_credentials(resource=RESOURCE))["access_token"]
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await browser.introspect(jwt_token)
    assert refused.value.response.json()["error"] == "unsupported_token_type"


async def test_the_authorization_code_flow_runs_headless(
    provider: OidcProvider, browser: Browser
) -> None:
    body = await browser.authorization_code(resource=RESOURCE, scope="notes:read offline_access")
    assert browser.prompts == ["login", "consent"]
    claims = await verified(provider, body["access_token"], RESOURCE)
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    assert claims["sub"] == "alice"
    assert claims["client_id"] == INTEROP_CLIENT
    assert claims["scope"] == "notes:read"  # offline_access is the AS's, not the resource's
    assert isinstance(body["refresh_token"], str)

    # Refresh: a new token for the same caller and resource.
    refreshed = await browser.refresh(body["refresh_token"])
    again = await verified(provider, refreshed["access_token"], RESOURCE)
    assert refreshed["access_token"] != body["access_token"]
    assert (again["iss"], again["sub"], again["client_id"]) == (
        claims["iss"],
        claims["sub"],
        claims["client_id"],
    )

    # Step-up from the same browser: the session cookie skips the login, consent remains.
    wider = await browser.authorization_code(resource=RESOURCE, scope="notes:read notes:write")
    assert browser.prompts == ["login", "consent", "consent"]
    stepped = await verified(provider, wider["access_token"], RESOURCE)
    assert stepped["scope"] == "notes:read notes:write"
    assert stepped["sub"] == "alice"
    assert "refresh_token" not in wider  # no offline_access asked for


async def test_the_redirect_carries_code_state_and_iss(
    provider: OidcProvider, browser: Browser
) -> None:
    pkce = Pkce.new()
    url = browser.authorization_url(
        resource=RESOURCE,
        scope="notes:read",
        pkce=pkce,
        state="xyz",
        redirect_uri="http://127.0.0.1:54321/callback",  # any loopback port (RFC 8252)
    )
    callback = await browser.authorize(url)
    assert callback.url.startswith("http://127.0.0.1:54321/callback?")
    assert (callback.state, callback.iss, callback.error) == ("xyz", provider.issuer, None)
    assert callback.code

    # PKCE is enforced: the code needs its verifier.
    assert callback.code is not None
    with pytest.raises(LoginError, match="invalid_grant"):
        await browser.exchange_code(
            callback.code,
            Pkce.new().verifier,
            resource=RESOURCE,
            redirect_uri="http://127.0.0.1:54321/callback",
        )


async def test_another_user_gets_another_subject(provider: OidcProvider) -> None:
    async with Browser(provider, user="bob") as bob:
        body = await bob.authorization_code(resource=RESOURCE, scope="notes:read")
    assert (await verified(provider, body["access_token"], RESOURCE))["sub"] == "bob"


async def test_dynamic_registration_is_open_and_limits_the_client_to_its_scope(
    provider: OidcProvider, browser: Browser
) -> None:
    """Section 5's gotcha: a client registered with one scope cannot step up."""
    client = await browser.register(
        {
            "client_name": "dcr-test",
            "application_type": "native",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "notes:read",
        }
    )
    client_id = client["client_id"]
    body = await browser.authorization_code(
        resource=RESOURCE, scope="notes:read", client_id=client_id
    )
    claims = await verified(provider, body["access_token"], RESOURCE)
    assert claims["client_id"] == client_id
    pkce = Pkce.new()
    url = browser.authorization_url(
        resource=RESOURCE,
        scope="notes:read notes:write",
        pkce=pkce,
        state="s",
        client_id=client_id,
    )
    callback = await browser.authorize(url)
    assert callback.error == "invalid_scope"


async def test_a_restart_with_rotated_keys_keeps_the_issuer(tools: ConformanceTools) -> None:
    async with oidc_provider(tools) as provider, Browser(provider) as browser:
        before = (await browser.client_credentials(resource=RESOURCE))["access_token"]
        issuer, old_kids = provider.issuer, list(provider.kids)
        await trio.to_thread.run_sync(provider.restart)
        assert (provider.issuer, provider.kids) == (issuer, old_kids)
        await verified(provider, before, RESOURCE)  # same keys: still good

        await trio.to_thread.run_sync(lambda: provider.restart(rotate_keys=True))
        assert provider.issuer == issuer
        assert not set(provider.kids) & set(old_kids)
        with pytest.raises(KeyError):
            await verified(provider, before, RESOURCE)  # its kid is gone from the JWKS
        after = (await browser.client_credentials(resource=RESOURCE))["access_token"]
        assert jwt.get_unverified_header(after)["kid"] in provider.kids
        await verified(provider, after, RESOURCE)


async def test_a_short_access_token_ttl(tools: ConformanceTools) -> None:
    async with oidc_provider(tools, access_token_ttl=2) as provider, Browser(provider) as browser:
        body = await browser.client_credentials(resource=RESOURCE)
        assert body["expires_in"] == 2
        claims = await verified(provider, body["access_token"], RESOURCE)
        assert claims["exp"] - claims["iat"] == 2


async def test_the_provider_ends_by_pid_and_says_why_it_did_not_start(
    tools: ConformanceTools,
) -> None:
    provider = OidcProvider(tools)
    await trio.to_thread.run_sync(provider.start)
    process = provider.process
    assert process is not None
    assert await trio.to_thread.run_sync(provider.stop) == 0
    assert process.returncode == 0
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            await http.get(provider.metadata_url)

    broken = OidcProvider(tools, access_token_ttl=0)
    with pytest.raises(RuntimeError, match="access-token-ttl"):
        await trio.to_thread.run_sync(broken.start)
    assert broken.process is None


async def test_conformance_authorization_server_metadata(
    provider: OidcProvider, tools: ConformanceTools, tmp_path: Path
) -> None:
    args = [
        "authorization",
        "--url",
        provider.issuer,
        "--scenario",
        "authorization-server-metadata-endpoint",
    ]
    with trio.fail_after(60):
        done = await run_conformance_async(tools, tools.next_cli, args, cwd=tmp_path)
    context = f"\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, context
    assert "Passed: 1/1, 0 failed" in done.stdout, context
    assert isinstance(done, subprocess.CompletedProcess)
