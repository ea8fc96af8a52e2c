"""The command line's ``--auth-*`` flags: a real resource server, or one clear line and status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
import trio

from _auth_server import AuthorizationServer, serve_authorization_server
from _processes import ServerProcess
from conftest import INIT_HEADERS, initialize_body
from test_cli_errors import NOTES, ROOT, run_cli

pytest.importorskip("joserfc", reason="needs the auth extra")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--auth-resource", "http://127.0.0.1/mcp"], "error: --auth-resource needs --auth-issuer"),
        (["--auth-issuer", "http://127.0.0.1:1"], "error: --auth-issuer needs --auth-resource"),
        (
            ["--auth-resource", "ftp://h/mcp", "--auth-issuer", "http://127.0.0.1:1"],
            "resource must be an absolute http(s) URL",
        ),
        (
            [
                "--auth-resource",
                "http://127.0.0.1/mcp",
                "--auth-issuer",
                "http://127.0.0.1:1",
                "--auth-introspection-client-id",
                "rs",
            ],
            "needs the client secret in the environment variable MCP_INTROSPECTION_SECRET",
        ),
        (
            [
                "--auth-resource",
                "http://127.0.0.1/mcp",
                "--auth-issuer",
                "http://127.0.0.1:1",
                "--auth-scopes",
                'a"b',
            ],
            "is not a valid OAuth scope",
        ),
        (
            ["--auth-resource", "http://127.0.0.1/mcp", "--auth-max-failed", "many"],
            "CALLS/SECONDS",
        ),
    ],
)
def test_a_mistake_in_the_auth_flags_is_one_line_and_status_2(
    args: list[str], message: str
) -> None:
    result = run_cli("serve", f"{NOTES}:server", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]


def test_the_auth_extra_is_named_when_it_is_missing() -> None:
    result = run_cli(
        "serve",
        f"{NOTES}:server",
        "--auth-resource",
        "http://127.0.0.1/mcp",
        "--auth-issuer",
        "http://127.0.0.1:1",
        blocked="joserfc",
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --auth-resource needs the auth extra: pip install 'trio-mcp-sessions[auth]'"
    )


def test_an_app_built_in_code_refuses_the_auth_flags() -> None:
    result = run_cli(
        "serve", f"{NOTES}:app", "--auth-resource", "http://127.0.0.1/mcp", "--auth-issuer", "x"
    )
    assert result.returncode == 2
    assert "--auth-issuer, --auth-resource would not apply" in result.stderr


def test_the_secret_is_never_a_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_mcp_sessions", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert "--auth-introspection-secret-env" in result.stdout
    assert "--auth-client-secret " not in result.stdout


async def test_the_command_line_serves_a_resource_server() -> None:
    # The stand-in authorization server (real HTTP, real keys) and the CLI in a
    # subprocess: a token it signed for the configured resource works, others
    # get the challenges, and the metadata is there.
    async with trio.open_nursery() as nursery:
        authority = AuthorizationServer()
        authority.add_key()
        await serve_authorization_server(nursery, authority)
        # The resource is this server's URL, which the CLI only knows once bound:
        # bind a port first, then tell it both.
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        resource = f"http://127.0.0.1:{port}/mcp"
        process = await ServerProcess.start(
            f"{NOTES}:server",
            "--bind",
            f"127.0.0.1:{port}",
            "--auth-resource",
            resource,
            "--auth-issuer",
            authority.issuer,
            "--auth-scopes",
            "notes:read",
        )
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                metadata = await http.get(
                    f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"
                )
                assert metadata.json()["resource"] == resource
                assert metadata.json()["authorization_servers"] == [authority.issuer]
                body = initialize_body()
                r = await http.post(resource, json=body, headers=INIT_HEADERS)
                assert r.status_code == 401
                assert 'scope="notes:read"' in r.headers["www-authenticate"]
                good = authority.token(aud=resource)
                r = await http.post(
                    resource,
                    json=body,
                    headers={**INIT_HEADERS, "authorization": f"Bearer {good}"},
                )
                assert r.status_code == 200, r.text
                other = authority.token(aud="http://127.0.0.1/other")
                r = await http.post(
                    resource,
                    json=body,
                    headers={**INIT_HEADERS, "authorization": f"Bearer {other}"},
                )
                assert r.status_code == 401
                assert 'error="invalid_token"' in r.headers["www-authenticate"]
        finally:
            assert await process.stop() == 0
            assert b"Traceback" not in process.stderr
            assert good.encode() not in process.stderr  # never logged
        nursery.cancel_scope.cancel()


def test_os_environ_is_how_the_secret_arrives() -> None:
    env = {**os.environ, "MY_SECRET": "s3cret"}
    code = (
        "import sys\nfrom trio_mcp_sessions._cli import _parser, auth_from\n"
        "args = _parser().parse_args(sys.argv[1:])\n"
        "auth = auth_from(args)\n"
        "print(type(auth.verifier).__name__, auth.base_scopes == {'a', 'b'})\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "serve",
            f"{NOTES}:server",
            "--auth-resource",
            "http://127.0.0.1/mcp",
            "--auth-issuer",
            "http://127.0.0.1:1",
            "--auth-scopes",
            "a,b",
            "--auth-introspection-client-id",
            "rs",
            "--auth-introspection-secret-env",
            "MY_SECRET",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.stdout.split() == ["IntrospectionVerifier", "True"], result.stderr
