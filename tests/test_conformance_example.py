"""The conformance example's input-asking fixtures, one handler each, in both eras.

The 2026-07-28 conformance leg drives them as input-required rounds; here the
official ``mcp`` client calls the same handlers in a session (``legacy``:
server-to-client requests) and at 2026-07-28 (``auto``: the client answers the
``InputRequiredResult`` rounds), with the same callbacks and the same answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import mcp_types as types
import pytest
import trio
from mcp.client import Client, ClientRequestContext
from pydantic import FileUrl

from _harness import load_example
from trio_mcp_sessions import StreamableHTTPApp

if TYPE_CHECKING:
    from conftest import StartServer, TracebackRecorder

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpx2\.:ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpcore2\.:ResourceWarning"),
]

TIMEOUT = 10.0
Mode = Literal["legacy", "auto"]


def load_app() -> StreamableHTTPApp:
    app = load_example("conformance_server").app
    assert isinstance(app, StreamableHTTPApp)
    return app


async def elicitation(
    context: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult:
    message = params.message if isinstance(params, types.ElicitRequestFormParams) else ""
    if "color" in message:
        return types.ElicitResult(action="accept", content={"color": "blue"})
    if "context" in message:
        return types.ElicitResult(action="accept", content={"context": "tests"})
    if "confirm" in message:
        return types.ElicitResult(action="accept", content={"ok": True})
    return types.ElicitResult(action="accept", content={"name": "Ada"})


async def sampling(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="Paris"), model="m"
    )


async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri=FileUrl("file:///work"), name="work")])


def text_of(result: types.CallToolResult) -> str:
    assert not result.is_error, result
    (block,) = result.content
    assert isinstance(block, types.TextContent), block
    return block.text


CALLS: list[tuple[str, str]] = [
    ("test_input_required_result_elicitation", "Hello, Ada!"),
    ("test_input_required_result_sampling", "Model said: Paris"),
    ("test_input_required_result_list_roots", "Client exposed 1 root(s): file:///work"),
    ("test_input_required_result_request_state", "state-ok: confirmed=True"),
    ("test_input_required_result_multiple_inputs", "All inputs received: Paris Ada (1 root(s))"),
    ("test_input_required_result_multi_round", "Ada likes blue."),
    ("test_input_required_result_tampered_state", "state-ok: confirmed=True"),
    ("test_input_required_result_capabilities", "Answered: ask, sample"),
    ("test_streaming_elicitation", "Hello, Ada!"),
    ("test_missing_capability", "Client declared sampling; the model said: Paris"),
]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_one_handler_both_eras(
    mode: Mode, start_server: StartServer, tracebacks: TracebackRecorder
) -> None:
    """Every input-asking fixture answers the same in a session and at 2026-07-28."""
    url = await start_server(load_app())
    with trio.fail_after(TIMEOUT):
        async with Client(
            url,
            mode=mode,
            cache=None,
            read_timeout_seconds=TIMEOUT,
            elicitation_callback=elicitation,
            sampling_callback=sampling,
            list_roots_callback=list_roots,
        ) as client:
            expected = "2026-07-28" if mode == "auto" else "2025-11-25"
            assert client.protocol_version == expected
            for name, text in CALLS:
                assert text_of(await client.call_tool(name, {})) == text, name
            prompt = await client.get_prompt("test_input_required_result_prompt")
            content = prompt.messages[0].content
            assert isinstance(content, types.TextContent)
            assert content.text == "Use the following context: tests"
    assert not tracebacks.records, tracebacks.describe()
