"""The documentation's Python blocks are real code against the current API.

Every ``python`` block of the tutorial and the how-to pages carries a marker
comment (``% test: KIND``) on the line before it, and this module checks each:

- ``quickstart``: the tutorial's first server, imported as a module and served
  on a real 127.0.0.1:0 Hypercorn, answers ``initialize`` and a tool call;
- ``run``: executed, in order, in the namespace of the page's blocks before it
  (the tutorial's in the quick start's), so its imports and constructors run;
- ``pytest``: a complete test module, whose tests are run here.
"""

from __future__ import annotations

import argparse
import inspect
import re
import shutil
import ssl
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypercorn.config import Config

import trio_mcp_sessions
from _harness import messages
from conftest import INIT_HEADERS, initialize_body
from trio_mcp_sessions import RequestInfo, serve

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["tutorial.md", "howto/deploying.md", "howto/protecting.md", "howto/testing.md"]
BLOCK = re.compile(r"^(?:% test: (\w+)\n)?```python\n(.*?)^```$", re.M | re.S)
KINDS = {"quickstart", "run", "pytest"}


def _blocks(page: str) -> list[tuple[str, str]]:
    text = (DOCS / page).read_text()
    found = [(kind or "", code) for kind, code in BLOCK.findall(text)]
    assert len(found) == text.count("```python"), f"{page}: a python block the pattern missed"
    return found


def _run_page(page: str, namespace: dict[str, Any]) -> dict[str, Any]:
    for kind, code in _blocks(page):
        if kind == "run":
            exec(compile(code, f"{page}:run", "exec"), namespace)
    return namespace


def _quickstart() -> ModuleType:
    [code] = [code for kind, code in _blocks("tutorial.md") if kind == "quickstart"]
    module = ModuleType("weather")  # imported, as the command line does: the guard holds
    exec(compile(code, "tutorial.md:quickstart", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_is_marked_for_testing(page: str) -> None:
    blocks = _blocks(page)
    assert blocks
    for kind, code in blocks:
        assert kind in KINDS, f"{page}: unmarked block starting {code[:60]!r}"


async def test_the_quick_start_server_answers_over_http() -> None:
    server = _quickstart().server
    stop = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serving = partial(serve, server, bind="127.0.0.1:0", shutdown_trigger=stop.wait)
            urls = await nursery.start(serving)
            url = f"{urls[0]}/mcp"
            async with httpx.AsyncClient(timeout=10) as http:
                reply = await http.post(url, json=initialize_body(), headers=INIT_HEADERS)
                assert reply.status_code == 200
                [init] = messages(reply)
                assert init["result"]["serverInfo"]["name"] == "weather"
                session = {
                    **INIT_HEADERS,
                    "mcp-session-id": reply.headers["mcp-session-id"],
                    "mcp-protocol-version": "2025-11-25",
                }
                call = {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "forecast", "arguments": {"city": "Lima", "days": 2}},
                }
                reply = await http.post(url, json=call, headers=session)
                assert reply.status_code == 200
                [result] = messages(reply)
                assert result["result"]["content"][0]["text"] == "Sunny in Lima for 2 days"
            stop.set()


def test_the_tutorial_blocks_run_in_order() -> None:
    namespace = _run_page("tutorial.md", dict(_quickstart().__dict__))
    tools = namespace["server"]._tools  # the blocks' tools landed on the quick start's server
    assert {"forecast", "long_forecast", "book_trip"} <= set(tools)
    assert namespace["options"].limits.max_sessions == 2_000


def test_the_deploying_blocks_run() -> None:
    namespace = _run_page("howto/deploying.md", dict(_quickstart().__dict__))
    assert namespace["app"].options.call_limits.max_inflight_per_client == 16


@pytest.mark.parametrize(
    ("peer", "forwarded", "key"),
    [
        ("10.0.0.5", "203.0.113.7", "203.0.113.7"),  # through the proxy
        ("10.0.0.5", "1.2.3.4, 203.0.113.7", "203.0.113.7"),  # a client's own entry is ignored
        ("198.51.100.9", "203.0.113.7", "198.51.100.9"),  # not from the proxy: header ignored
        ("10.0.0.5", "not-an-address", "10.0.0.5"),  # a malformed entry keys on the proxy
        ("10.0.0.5", None, "10.0.0.5"),
        ("::1", "2001:db8::1", "2001:db8::1"),
        (None, "203.0.113.7", "unknown"),  # never None: that would exempt the request
    ],
)
def test_the_forwarded_for_key_trusts_only_the_proxy(
    peer: str | None, forwarded: str | None, key: str
) -> None:
    client_key = _run_page("howto/deploying.md", dict(_quickstart().__dict__))["client_key"]
    headers = {} if forwarded is None else {"x-forwarded-for": forwarded}
    assert client_key(RequestInfo(client_address=peer, headers=headers)) == key


def _testing_module(block: int = 0) -> dict[str, Any]:
    """The testing page's *block*-th ``pytest`` block, executed as a module."""
    code = [code for kind, code in _blocks("howto/testing.md") if kind == "pytest"][block]
    namespace: dict[str, Any] = {"__name__": "test_weather"}
    exec(compile(code, f"howto/testing.md:pytest[{block}]", "exec"), namespace)
    return namespace


async def test_the_testing_how_to_http_test_passes() -> None:
    with trio.fail_after(20):
        await _testing_module()["test_forecast_over_http"]()


@pytest.mark.parametrize(
    "name", ["test_an_idle_session_ends", "test_a_stuck_tool_is_cut_at_its_deadline"]
)
async def test_the_testing_how_to_clock_tests_pass(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    await _testing_module()[name](autojump_clock)


def test_the_testing_how_to_kit_block_has_its_tests() -> None:
    names = {name for name in _testing_module(1) if name.startswith("test_")}
    assert names == {
        "test_both_eras",
        "test_the_get_stream_and_the_end_of_a_session",
        "test_a_body_that_trickles_gets_408",
    }


@pytest.mark.parametrize(
    "name",
    [
        "test_both_eras",
        "test_the_get_stream_and_the_end_of_a_session",
        "test_a_body_that_trickles_gets_408",
    ],
)
async def test_the_testing_how_to_kit_tests_pass(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    await _testing_module(1)[name](autojump_clock)


def test_the_api_reference_documents_every_public_name() -> None:
    reference = (DOCS / "reference.rst").read_text()
    documented = set(re.findall(r"^\.\. (?:auto\w+|py:data):: (\w+)$", reference, re.M))
    public = {
        name
        for name in dir(trio_mcp_sessions)
        if not name.startswith("_") and not inspect.ismodule(getattr(trio_mcp_sessions, name))
    }
    assert documented == public
    assert ".. automodule:: trio_mcp_sessions.testing" in reference  # the test kit, too


async def test_tls_from_a_hypercorn_config_as_the_deploying_page_says(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    with trio.fail_after(60):
        await trio.run_process(openssl, capture_stdout=True, capture_stderr=True)
    config = Config()
    config.certfile, config.keyfile = str(cert), str(key)
    stop = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serving = partial(
                serve, _quickstart().server, bind="127.0.0.1:0", config=config,
                shutdown_trigger=stop.wait,
            )  # fmt: skip
            [url] = await nursery.start(serving)
            assert url.startswith("https://")
            async with httpx.AsyncClient(
                timeout=10, verify=ssl.create_default_context(cafile=cert)
            ) as http:
                reply = await http.post(f"{url}/mcp", json=initialize_body(), headers=INIT_HEADERS)
            assert reply.status_code == 200
            stop.set()


def test_the_protecting_blocks_run() -> None:
    namespace = _run_page("howto/protecting.md", {})
    app = namespace["protected"]
    assert app.statistics().auth is not None
    server = namespace["notes_server"]
    assert server.tool_scopes("add_note") == {"notes:write"}
    assert namespace["hierarchy"]("notes", "notes:read")
    assert not namespace["hierarchy"]("notes", "notebook")


def _protecting_module() -> dict[str, Any]:
    [code] = [code for kind, code in _blocks("howto/protecting.md") if kind == "pytest"]
    namespace: dict[str, Any] = {"__name__": "test_protected"}
    exec(compile(code, "howto/protecting.md:pytest", "exec"), namespace)
    return namespace


@pytest.mark.parametrize(
    "name",
    ["test_a_call_without_its_scope_names_what_to_ask_for", "test_no_token_gets_a_challenge"],
)
async def test_the_protecting_how_to_tests_pass(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    assert {n for n in _protecting_module() if n.startswith("test_")} == {
        "test_a_call_without_its_scope_names_what_to_ask_for",
        "test_no_token_gets_a_challenge",
    }
    await _protecting_module()[name](autojump_clock)


def test_every_flag_the_docs_show_exists() -> None:
    """A ``--flag`` in a shell block of the README or a page is one the command line has."""
    from trio_mcp_sessions._cli import _parser

    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    known = {
        option for action in commands.choices["serve"]._actions for option in action.option_strings
    }
    shell = re.compile(r"^```(?:bash|sh|console)\n(.*?)^```$", re.M | re.S)
    for path in [DOCS.parent / "README.md", *(DOCS / page for page in PAGES)]:
        for block in shell.findall(path.read_text()):
            if "trio_mcp_sessions serve" not in block and "trio-mcp-sessions serve" not in block:
                continue
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", block):
                assert flag in known, f"{path.name}: {flag} is not a flag of serve"
