"""The command line's ordinary mistakes: one line on stderr, exit status 2, no traceback.

Also what a newcomer needs to see: ``--help`` with the defaults, ``serve()``
saying where it listens, and TLS from the command line.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from _processes import ServerProcess
from conftest import INIT_HEADERS, initialize_body
from trio_mcp_sessions import McpServer, serve

ROOT = Path(__file__).resolve().parent.parent
NOTES = "examples/notes_server.py"


def run_cli(*args: str, blocked: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command line in a subprocess; *blocked* makes a module unimportable there."""
    code = "import sys\n"
    if blocked is not None:
        code += f"sys.modules[{blocked!r}] = None\n"
    code += "from trio_mcp_sessions._cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "blocked", "message"),
    [
        (
            ["serve", f"{NOTES}:app", "--max-sessions", "1", "--sqlite", "never.db"],
            None,
            f"error: {NOTES}:app is an app built in code: --max-sessions, --sqlite would not apply",
        ),
        (["serve", "nowhere.py:server"], None, "error: nowhere.py: no such file"),
        (["serve", "no_such_module:server"], None, "error: no module named 'no_such_module'"),
        (["serve", f"{NOTES}:nothing"], None, f"error: {NOTES} has no 'nothing'"),
        (["serve", f"{NOTES}:server", "--log-level", "bogus"], None, "invalid choice: 'bogus'"),
        (["serve", f"{NOTES}:server", "--max-sessions", "0"], None, "max_sessions must be at"),
        (["serve", f"{NOTES}:server", "--rate-limit", "ten"], None, "CREATIONS/SECONDS"),
        (["serve", f"{NOTES}:server", "--certfile", "c.pem"], None, "needs both --certfile"),
        (
            ["serve", f"{NOTES}:server", "--certfile", "no.pem", "--keyfile", "no.key"],
            None,
            "error: --certfile no.pem: no such file",
        ),
        (
            ["serve", f"{NOTES}:server", "--redis", "redis://127.0.0.1:1"],
            "coredis",
            "error: --redis needs the redis extra: pip install 'trio-mcp-sessions[redis]'",
        ),
        (
            ["serve", f"{NOTES}:server", "--metrics-path", "/metrics"],
            "prometheus_client",
            "error: --metrics-path needs the metrics extra: "
            "pip install 'trio-mcp-sessions[metrics]'",
        ),
        (["bogus"], None, "error: argument command: invalid choice: 'bogus'"),
    ],
)
def test_an_ordinary_mistake_is_one_line_and_status_2(
    args: list[str], blocked: str | None, message: str
) -> None:
    result = run_cli(*args, blocked=blocked)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert lines[0].startswith("error: ")
    assert not (ROOT / "never.db").exists()  # the ignored --sqlite made no database


def test_the_help_says_the_defaults() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for shown in (
        "--max-sessions MAX_SESSIONS live sessions at most (default: 10000)",
        "--max-inflight MAX_INFLIGHT",
        "(default: 512)",
        "--log-level {debug,info,warning,error,critical}",
        "--certfile",
        "--store-prefix",
    ):
        assert shown in text, shown


async def test_serve_logs_where_it_listens_and_how_it_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_mcp_sessions.serve")
    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                partial(serve, McpServer("log"), bind="127.0.0.1:0", shutdown_trigger=stop.wait)
            )
            stop.set()
    [record] = [r for r in caplog.records if r.getMessage().startswith("serving MCP on")]
    assert record.getMessage() == f"serving MCP on {urls[0]}/mcp (stops on its trigger)"
    assert record.url == f"{urls[0]}/mcp"  # type: ignore[attr-defined]


async def test_the_command_line_serves_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme", reason="TLS tests need trustme (in [test])")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    cafile = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(cafile))
    server = await ServerProcess.start(
        f"{NOTES}:server", "--certfile", str(certfile), "--keyfile", str(keyfile)
    )
    try:
        assert server.url.startswith("https://127.0.0.1:")
        verify = ssl.create_default_context(cafile=str(cafile))
        with trio.fail_after(30):
            async with httpx.AsyncClient(timeout=5, verify=verify) as http:
                r = await http.post(server.url, json=initialize_body(), headers=INIT_HEADERS)
                assert r.status_code == 200
            assert await server.stop() == 0
    finally:
        await server.kill()
