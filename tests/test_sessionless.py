"""The sessionless service without HTTP: input-required rounds, cancellation, logs."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from trio_mcp_sessions import Context, McpServer, RequestInfo, RequestStateCodec
from trio_mcp_sessions._protocol._era import (
    META_CLIENT_CAPABILITIES,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    ModernRequest,
)
from trio_mcp_sessions._protocol._jsonrpc import Request
from trio_mcp_sessions._stateless import SessionlessService

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

MODERN = "2026-07-28"
CAPS: dict[str, Any] = {"elicitation": {}, "sampling": {}}
INFO = RequestInfo(client_address="127.0.0.1")


def modern(
    method: str, params: dict[str, Any], *, log_level: str | None = None, request_id: int = 1
) -> ModernRequest:
    meta: dict[str, Any] = {META_PROTOCOL_VERSION: MODERN, META_CLIENT_CAPABILITIES: CAPS}
    if log_level is not None:
        meta[META_LOG_LEVEL] = log_level
    return ModernRequest(
        Request(request_id, method, {**params, "_meta": meta}), MODERN, CAPS, None, log_level
    )


def make_server() -> tuple[McpServer, list[str]]:
    server = McpServer("sessionless")
    ran: list[str] = []

    @server.tool()
    async def two_steps(ctx: Context) -> str:
        """Asks twice, one question per round."""
        ran.append("two_steps")
        first = await ctx.elicit("First?", {"type": "object"}, key="step1")
        second = await ctx.elicit("Second?", {"type": "object"}, key="step2")
        return f"{first['content']['v']}+{second['content']['v']}"

    @server.tool()
    async def swallows(ctx: Context) -> str:
        """Catches everything, the question's signal too."""
        try:
            await ctx.elicit("Name?", {"type": "object"}, key="name")
        except Exception:
            return "swallowed"
        return "answered"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """Logs, then answers."""
        await ctx.info("hello")
        return "done"

    @server.tool()
    async def hangs() -> str:
        """Never answers."""
        await trio.sleep_forever()
        return "never"

    @server.prompt()
    async def greeting(ctx: Context) -> str:
        """Asks for a name."""
        answer = await ctx.elicit("Name?", {"type": "object"}, key="name")
        return f"Hello {answer['content']['v']}"

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> list[str]:
        return []

    return server, ran


@asynccontextmanager
async def running(server: McpServer, **options: Any) -> AsyncIterator[SessionlessService]:
    """The service, started; stopped (and every handler with it) on the way out."""
    service = SessionlessService(server, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        yield service
        await service.aclose()


async def answer(service: SessionlessService, request: ModernRequest) -> list[dict[str, Any]]:
    exchange = service.open_request(request, INFO, notifications=True)
    return [json.loads(event.data) async for event in exchange.stream]


def state_payload(token: str) -> dict[str, Any]:
    import base64

    body = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


async def test_rounds_carry_only_the_answers_the_handler_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, ran = make_server()
    async with running(
        server, request_states=RequestStateCodec(), wall_clock=trio.current_time
    ) as service:
        call = {"name": "two_steps", "arguments": {}}
        [first] = await answer(service, modern("tools/call", call))
        result = first["result"]
        assert result["resultType"] == "input_required"
        assert list(result["inputRequests"]) == ["step1"]
        # Round 2: the answer, plus an extra the handler never asks for.
        responses = {"step1": {"action": "accept", "content": {"v": "a"}}, "junk": {"x": 1}}
        retry = {**call, "requestState": result["requestState"], "inputResponses": responses}
        [second] = await answer(service, modern("tools/call", retry, request_id=2))
        result = second["result"]
        assert list(result["inputRequests"]) == ["step2"]
        sealed = state_payload(result["requestState"])["s"]
        assert sealed == {"answers": {"step1": responses["step1"]}, "asked": ["step2"]}
        # Round 3 completes with both answers; the handler ran once per round.
        last = {
            **call,
            "requestState": result["requestState"],
            "inputResponses": {"step2": {"action": "accept", "content": {"v": "b"}}},
        }
        [third] = await answer(service, modern("tools/call", last, request_id=3))
        assert third["result"]["content"][0]["text"] == "a+b"
        assert ran == ["two_steps"] * 3
        stats = service.statistics()
        assert (stats.input_required, stats.answered, stats.requests_in_flight) == (2, 1, 0)


async def test_a_question_caught_by_the_handler_is_still_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with running(server) as service:
        [reply] = await answer(service, modern("tools/call", {"name": "swallows"}))
        assert reply["result"]["resultType"] == "input_required"
        assert list(reply["result"]["inputRequests"]) == ["name"]


async def test_prompts_may_ask_but_completions_may_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with running(server) as service:
        [reply] = await answer(service, modern("prompts/get", {"name": "greeting"}))
        assert reply["result"]["resultType"] == "input_required"


@pytest.mark.parametrize(("log_level", "logged"), [(None, False), ("info", True), ("error", False)])
async def test_logs_go_out_only_at_the_requested_level(
    autojump_clock: trio.testing.MockClock, log_level: str | None, logged: bool
) -> None:
    server, _ = make_server()
    async with running(server) as service:
        events = await answer(
            service, modern("tools/call", {"name": "chatty"}, log_level=log_level)
        )
        methods = [e.get("method") for e in events[:-1]]
        assert methods == (["notifications/message"] if logged else [])
        assert events[-1]["result"]["content"][0]["text"] == "done"


async def test_a_client_that_leaves_cancels_its_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with running(server) as service:
        exchange = service.open_request(
            modern("tools/call", {"name": "hangs"}), INFO, notifications=True
        )
        await trio.sleep(5)
        assert service.statistics().requests_in_flight == 1
        exchange.stream.detach()  # what the response does when the client disconnects
        await trio.testing.wait_all_tasks_blocked()
        stats = service.statistics()
        assert (stats.requests_in_flight, stats.cancelled) == (0, 1)


async def test_shutdown_cancels_what_still_runs_and_refuses_new_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_mcp_sessions import ServiceUnavailable

    server, _ = make_server()
    async with running(server) as service:
        exchange = service.open_request(
            modern("tools/call", {"name": "hangs"}), INFO, notifications=True
        )
        service.begin_drain()
        with pytest.raises(ServiceUnavailable):
            service.open_request(modern("tools/call", {"name": "chatty"}), INFO, notifications=True)
        service.finish_drain()
        assert [e async for e in exchange.stream] == []
        await trio.testing.wait_all_tasks_blocked()
        assert service.statistics().requests_in_flight == 0


async def test_extras_sent_without_a_request_state_are_not_sealed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with running(server, wall_clock=trio.current_time) as service:
        step1 = {"action": "accept", "content": {"v": "a"}}
        call = {"name": "two_steps", "inputResponses": {"step1": step1, "junk": {"x": 1}}}
        [reply] = await answer(service, modern("tools/call", call))
        result = reply["result"]
        assert list(result["inputRequests"]) == ["step2"]
        sealed = state_payload(result["requestState"])["s"]
        assert sealed == {"answers": {"step1": step1}, "asked": ["step2"]}


async def test_a_handler_that_raises_the_signal_itself_gets_an_error_not_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_mcp_sessions._server._errors import InputRequired

    server = McpServer("raises")

    @server.tool()
    def odd() -> str:
        """Raises the signal with no question behind it."""
        raise InputRequired({})

    async with running(server) as service:
        [reply] = await answer(service, modern("tools/call", {"name": "odd"}))
        assert reply["error"]["code"] == -32603
        assert service.statistics().requests_in_flight == 0
