"""requestState keys shared by instances: a round begun on one finishes on another."""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Any

import pytest

from trio_mcp_sessions import Context, McpServer, RequestStateCodec, StreamableHTTPApp
from trio_mcp_sessions._cli import _read_keys
from trio_mcp_sessions.testing import McpTestClient, TestResponse, open_test_client

if TYPE_CHECKING:
    from pathlib import Path

    import trio.testing

pytestmark = pytest.mark.usefixtures("no_tracebacks")

CAPS: dict[str, Any] = {"elicitation": {}}
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": CAPS,
}
MODERN = "2026-07-28"


def make_server() -> McpServer:
    server = McpServer("keys")

    @server.tool()
    async def ask(ctx: Context) -> str:
        """Ask for a colour."""
        answer = await ctx.elicit("Colour?", {"type": "object"}, key="colour")
        return f"colour: {answer['content']['colour']}"

    return server


async def call(client: McpTestClient, params: dict[str, Any]) -> TestResponse:
    return await client.request("tools/call", params, name="ask")


@pytest.mark.parametrize("same_keys", [True, False])
async def test_a_round_begun_on_one_instance_finishes_on_another_with_the_same_keys(
    autojump_clock: trio.testing.MockClock, same_keys: bool
) -> None:
    key = secrets.token_bytes(32)
    other = key if same_keys else secrets.token_bytes(32)
    first_app = StreamableHTTPApp(make_server(), request_states=RequestStateCodec([key]))
    second_app = StreamableHTTPApp(make_server(), request_states=RequestStateCodec([other]))
    async with (
        open_test_client(first_app, protocol_version=MODERN, capabilities=CAPS) as on_first,
        open_test_client(second_app, protocol_version=MODERN, capabilities=CAPS) as on_second,
    ):
        params = {"_meta": META, "name": "ask", "arguments": {}}
        [first] = (await call(on_first, params)).messages
        state = first["result"]["requestState"]
        retry = {
            **params,
            "requestState": state,
            "inputResponses": {"colour": {"action": "accept", "content": {"colour": "teal"}}},
        }
        r = await call(on_second, retry)
        if same_keys:
            assert r.status == 200, r.body
            [done] = r.messages
            assert done["result"]["content"][0]["text"] == "colour: teal"
        else:
            assert r.status == 400
            error = r.json()["error"]
            assert (error["code"], error["data"]["reason"]) == (-32602, "unknown_key")


def test_the_command_line_reads_a_key_ring(tmp_path: Path) -> None:
    keys = [secrets.token_bytes(32), secrets.token_bytes(48)]
    path = tmp_path / "keys"
    path.write_text(
        "# signing key first\n" + "\n".join(base64.b64encode(k).decode() for k in keys) + "\n\n"
    )
    assert _read_keys(str(path)) == keys


@pytest.mark.parametrize(
    "content",
    ["", "not base64!\n", base64.b64encode(b"short").decode(), "é"],
)
def test_a_bad_key_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(SystemExit, match="error: --request-state-keys"):
        _read_keys(str(path))
    with pytest.raises(SystemExit, match="error: --request-state-keys"):
        _read_keys(str(tmp_path / "missing"))


async def test_rounds_and_refused_states_are_exported_as_metrics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pytest.importorskip(
        "prometheus_client", reason="metrics need the [metrics] extra (in [dev]): prometheus-client"
    )
    app = StreamableHTTPApp(make_server(), metrics_path="/metrics")
    async with open_test_client(app, protocol_version=MODERN, capabilities=CAPS) as client:
        params = {"_meta": META, "name": "ask", "arguments": {}}
        [first] = (await call(client, params)).messages
        tampered = {**params, "requestState": first["result"]["requestState"] + "x"}
        assert (await call(client, tampered)).status == 400
        text = (await client.send("GET", path="/metrics")).body.decode().splitlines()
    for line in (
        "mcp_sessionless_in_flight 0.0",
        "mcp_sessionless_input_required_total 1.0",
        "mcp_sessionless_refused_request_states_total 1.0",
        "mcp_sessionless_errors_total 1.0",
    ):
        assert line in text, line
