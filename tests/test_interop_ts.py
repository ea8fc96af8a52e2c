"""Interop: our server against the official TypeScript SDK client (1.32.2, session era).

The client is ``tests/ts_client/client.mjs`` on the pinned Node 22, importing
``@modelcontextprotocol/sdk`` 1.32.2 from ``.tools/conformance`` (installed
from ``tests/conformance``'s lockfile, see ``_conformance_tools``).  1.32.2
predates 2026-07-28: it must get a session through ``initialize`` and end it
with ``DELETE``.  The script runs as a subprocess (``trio.run_process``) so the
real Hypercorn it talks to keeps running on the test's trio loop; it prints one
JSON object of what it saw (results, notifications in arrival order, every
HTTP exchange), which the test checks together with the manager's statistics
and the server's log, in both reply modes.

One quirk of 1.32.2 is pinned down on purpose: after a JSON-RPC *error* on an
SSE response it resumes that finished stream (GET + ``Last-Event-ID``); we
must answer those resumes with a clean 4xx, and the session must go on.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import pytest
import trio

from _conformance_tools import (
    TESTS_DIR,
    ConformanceTools,
    ensure_conformance_tools,
    run_node_json,
)
from _harness import manager_of, wait_until
from trio_mcp_sessions import (
    CapabilityNotSupported,
    Context,
    McpServer,
    StreamableHTTPApp,
    ToolError,
)

if TYPE_CHECKING:
    from conftest import StartServer, TracebackRecorder

CLIENT_SCRIPT = TESTS_DIR / "ts_client" / "client.mjs"
CLIENT_DEADLINE = 60.0
"""Seconds for one run of the script (it gives itself 30 s; Node starts in well under 1 s)."""
TIMEOUT = 5.0
NAME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}
RETRY_MS = 100
SDK_MAX_RETRIES = 2
"""``StreamableHTTPReconnectionOptions.maxRetries``'s default in the TS SDK 1.32.2."""
ReplyMode = Literal["sse", "json"]


@pytest.fixture(scope="session")
def conformance_tools() -> ConformanceTools:
    """Node 22 + the TypeScript SDK, installed into ``.tools/conformance`` once per run."""
    return ensure_conformance_tools()


def make_server() -> McpServer:
    server = McpServer("ts-interop-server", "4.5.6", instructions="Be nice.")

    @server.tool()
    async def hello(ctx: Context) -> str:
        """Log once (the client calls it until the log arrives)."""
        await ctx.info("hello", logger="hello")
        return "hello"

    @server.tool()
    async def add(a: int, b: int = 2) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def work(steps: int, ctx: Context) -> str:
        """Report progress once per step and log at three levels on the way."""
        await ctx.debug("starting")
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
            await trio.sleep(0.01)
        await ctx.info("half way", logger="ts-interop")
        await ctx.warning({"code": 7})
        # In json reply mode the notifications travel on the GET stream and the
        # result on the POST's response: let the former land first (the SDK
        # drops, and reports, progress for a request that has its result).
        await trio.sleep(0.05)
        return f"worked {steps} steps"

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails with *reason*."""
        raise ToolError(reason)

    @server.tool()
    async def ask_model(prompt: str, ctx: Context) -> str:
        """Ask the client's model (sampling)."""
        try:
            result = await ctx.sample(
                prompt, max_tokens=64, system_prompt="be brief", timeout=TIMEOUT
            )
        except CapabilityNotSupported as exc:
            raise ToolError(f"sampling unavailable: {exc}") from exc
        return f"{result['model']} says {result['content']['text']}"

    @server.tool()
    async def ask_user(question: str, ctx: Context) -> dict[str, Any]:
        """Ask the user for a name (elicitation)."""
        try:
            answer = await ctx.elicit(question, NAME_SCHEMA, timeout=TIMEOUT)
        except CapabilityNotSupported as exc:
            raise ToolError(f"elicitation unavailable: {exc}") from exc
        return {"action": answer["action"], "content": answer.get("content")}

    @server.tool()
    async def roots(ctx: Context) -> str:
        """The client's roots, one ``name=uri`` per line."""
        try:
            found = await ctx.list_roots(timeout=TIMEOUT)
        except CapabilityNotSupported as exc:
            raise ToolError(f"roots unavailable: {exc}") from exc
        return "\n".join(f"{r.get('name')}={r['uri']}" for r in found)

    @server.resource("mem://greeting", mime_type="text/plain", description="A greeting.")
    def greeting() -> str:
        return "hello, world"

    @server.resource("mem://users/{user_id}/profile", mime_type="text/plain")
    def profile(user_id: str) -> str:
        """A user's profile."""
        return f"profile of user {user_id}"

    @server.prompt()
    def greet(name: str, style: str = "plain") -> str:
        """Greet someone."""
        return f"Say hello to {name} in a {style} style."

    @server.completion()
    def complete(ref: dict[str, Any], argument: dict[str, Any], context: Any) -> list[str]:
        if ref.get("name") == "greet" and argument.get("name") == "style":
            options = ["formal", "friendly", "plain"]
            return [o for o in options if o.startswith(str(argument.get("value", "")))]
        return []

    return server


async def run_client(tools: ConformanceTools, url: str) -> dict[str, Any]:
    """Run ``client.mjs`` on Node 22 against *url*; its JSON output, or a failed test."""
    return await run_node_json(
        tools, CLIENT_SCRIPT, str(tools.ts_sdk), url, timeout=CLIENT_DEADLINE
    )


def text_of(result: dict[str, Any]) -> str:
    content = result["content"]
    assert len(content) == 1, result
    assert content[0]["type"] == "text", result
    text = content[0]["text"]
    assert isinstance(text, str)
    return text


def kinds_until(events: list[dict[str, Any]], tool: str) -> list[dict[str, Any]]:
    """The events that arrived after the previous tool's result and before *tool*'s.

    ``hello``'s log messages (the client's probe of the GET stream) are left out.
    """
    window: list[dict[str, Any]] = []
    for event in events:
        if event.get("logger") == "hello":
            continue
        if event["kind"] == "result":
            if event["tool"] == tool:
                return window
            window = []
        else:
            window.append(event)
    raise AssertionError(f"no result for {tool!r} in {events}")


@pytest.mark.parametrize("reply_mode", ["sse", "json"])
async def test_typescript_sdk_client_session(
    reply_mode: ReplyMode,
    conformance_tools: ConformanceTools,
    start_server: StartServer,
    tracebacks: TracebackRecorder,
) -> None:
    """One TS SDK session: every feature answers, and the session ends by DELETE."""
    # retry_ms: how soon the SDK resumes a stream (see the error phase below).
    app = StreamableHTTPApp(make_server(), reply_mode=reply_mode, retry_ms=RETRY_MS)
    url = await start_server(app)
    out = await run_client(conformance_tools, url)

    # -- the session-era handshake
    assert out["protocolVersion"] == "2025-11-25"
    assert isinstance(out["sessionId"], str)
    assert out["sessionId"]
    assert out["serverInfo"]["name"] == "ts-interop-server"
    assert out["serverInfo"]["version"] == "4.5.6"
    assert out["instructions"] == "Be nice."
    for capability in ("tools", "resources", "prompts", "logging", "completions"):
        assert capability in out["serverCapabilities"], out["serverCapabilities"]
    assert out["ping"] == {}
    if reply_mode == "sse":
        assert out["helloCalls"] == 1  # logs travel on the call's own response

    # -- tools
    assert out["tools"] == ["add", "ask_model", "ask_user", "fail", "hello", "roots", "work"]
    assert text_of(out["add"]) == "42"
    assert out["add"].get("isError") is not True

    assert text_of(out["work"]) == "worked 3 steps"
    on_work = kinds_until(out["events"], "work")
    progress = [e for e in on_work if e["kind"] == "progress"]
    assert [(p["progress"], p["total"], p["message"]) for p in progress] == [
        (1, 3, "step 1"),
        (2, 3, "step 2"),
        (3, 3, "step 3"),
    ]
    logs = [(e["level"], e["logger"], e["data"]) for e in on_work if e["kind"] == "log"]
    assert logs == [
        ("debug", None, "starting"),
        ("info", "ts-interop", "half way"),
        ("warning", None, {"code": 7}),
    ]

    assert out["failure"]["isError"] is True
    assert text_of(out["failure"]) == "on purpose"

    # -- server-to-client requests, answered by the client's handlers during the call
    assert text_of(out["sampled"]) == "ts-model says echo: hi there"
    assert kinds_until(out["events"], "ask_model") == [
        {"kind": "request", "method": "sampling/createMessage"}
    ]
    assert out["elicited"].get("isError") is not True
    assert json.loads(text_of(out["elicited"])) == {"action": "accept", "content": {"name": "Ada"}}
    assert kinds_until(out["events"], "ask_user") == [
        {"kind": "request", "method": "elicitation/create"}
    ]
    assert text_of(out["roots"]) == "project=file:///work/project"
    sampling, elicitation, roots = out["serverRequests"]
    assert sampling["method"] == "sampling/createMessage"
    assert sampling["maxTokens"] == 64
    assert sampling["systemPrompt"] == "be brief"
    assert sampling["messages"] == [
        {"role": "user", "content": {"type": "text", "text": "hi there"}}
    ]
    assert elicitation["method"] == "elicitation/create"
    assert elicitation["message"] == "Your name?"
    assert elicitation["requestedSchema"] == NAME_SCHEMA
    assert roots == {"method": "roots/list"}

    # -- resources, prompts, completion
    assert out["resources"] == ["mem://greeting"]
    assert out["resourceTemplates"] == ["mem://users/{user_id}/profile"]
    assert out["read"]["contents"] == [
        {"uri": "mem://greeting", "mimeType": "text/plain", "text": "hello, world"}
    ]
    assert out["readTemplate"]["contents"] == [
        {"uri": "mem://users/7/profile", "mimeType": "text/plain", "text": "profile of user 7"}
    ]
    assert out["prompts"] == ["greet"]
    assert out["prompt"]["messages"] == [
        {
            "role": "user",
            "content": {"type": "text", "text": "Say hello to Ada in a formal style."},
        }
    ]
    assert out["completion"]["completion"]["values"] == ["formal", "friendly"]

    # -- everything so far: plain 200/202 answers, nothing the SDK complained about
    assert out["transportErrors"] == []
    main_phase = out["http"][: out["http"].index(out["errorPhase"]["http"][0])]
    assert {e["status"] for e in main_phase} <= {200, 202}, main_phase
    gets = [e for e in main_phase if e["method"] == "GET"]
    assert len(gets) == 1, gets  # the one standalone stream, opened after `initialized`
    assert gets[0]["contentType"] == "text/event-stream"
    assert gets[0]["lastEventId"] is None
    answers = {
        e["contentType"]
        for e in main_phase
        if e["method"] == "POST" and e["rpc"]["method"] not in ("initialize", None)
        if e["status"] == 200
    }
    assert answers == {"text/event-stream" if reply_mode == "sse" else "application/json"}

    # -- a JSON-RPC error (unknown tool): the SDK rejects the call ...
    assert out["unknownTool"]["code"] == -32602, out["unknownTool"]
    error_post, *resumes = out["errorPhase"]["http"]
    assert error_post["rpc"]["method"] == "tools/call"
    assert error_post["status"] == 200
    if reply_mode == "sse":
        # ... and, as 1.32.2 ends a request's stream only on a *result*, resumes
        # that finished stream (GET + Last-Event-ID) until it gives up. We answer
        # each resume with a clean 400 + JSON-RPC error (an empty 200 stream would
        # make it resume forever), and the session goes on.
        assert error_post["contentType"] == "text/event-stream"
        assert len(resumes) == SDK_MAX_RETRIES, resumes
        error_post_stream = resumes[0]["lastEventId"]
        assert isinstance(error_post_stream, str)
        for resume in resumes:
            assert resume["method"] == "GET"
            assert resume["session"] is True
            assert resume["lastEventId"] == error_post_stream
            assert resume["status"] == 400
            assert resume["error"]["error"]["code"] == -32600
            assert "cannot resume" in resume["error"]["error"]["message"]
        messages = [e["message"] for e in out["errorPhase"]["transportErrors"]]
        assert messages[-1] == f"Maximum reconnection attempts ({SDK_MAX_RETRIES}) exceeded."
        assert [e["code"] for e in out["errorPhase"]["transportErrors"]].count(400) == (
            SDK_MAX_RETRIES
        )
    else:
        # A JSON response carries no event id: nothing to resume.
        assert error_post["contentType"] == "application/json"
        assert resumes == []
        assert out["errorPhase"]["transportErrors"] == []
    assert text_of(out["afterError"]) == "2"

    # -- the end: one DELETE closed the session; nothing went wrong on either side
    assert [(e["method"], e["status"]) for e in out["deletePhase"]["http"]] == [("DELETE", 200)]
    assert out["deletePhase"]["transportErrors"] == []
    assert out["sessionIdAfterDelete"] is None
    assert all(e["status"] < 500 for e in out["http"]), out["http"]
    manager = manager_of(app)
    await wait_until(lambda: manager.statistics().live_sessions == 0, timeout=TIMEOUT)
    stats = manager.statistics()
    assert stats.created == 1
    assert stats.closed_by_reason == {"deleted": 1}
    assert stats.refused_by_reason == {}
    assert stats.slots_held == 0
    assert stats.requests_in_flight == 0
    assert not tracebacks.records, tracebacks.describe()
