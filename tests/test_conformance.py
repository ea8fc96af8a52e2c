"""The official MCP conformance suite against ``examples/conformance_server.py``.

Each test serves a freshly loaded copy of the example's ``server`` on a real
Hypercorn (``start_server``) and runs the pinned ``@modelcontextprotocol/conformance``
CLI on Node 22 as a subprocess (``trio.run_process``, so the server keeps running
on the same trio loop).  Results are read from the CLI's summary line and from the
``checks.json`` it writes per scenario under ``-o <tmp_path>/…``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import trio

from _conformance_tools import (
    ConformanceTools,
    ensure_conformance_tools,
    run_conformance_async,
)
from _harness import load_example
from trio_mcp_sessions import McpServer, StreamableHTTPApp

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import StartServer, TracebackRecorder

CLI_DEADLINE = 300.0
"""Seconds allowed for one CLI run (the whole active suite takes a few seconds)."""
TAIL_LINES = 60
"""How much of the CLI's output an assertion message quotes."""
MIN_ACTIVE_PASSED = 40
"""0.1.16's active suite at 2025-11-25 has 40 checks (reference server: 40 passed)."""
MIN_ACTIVE_PASSED_2025_06_18 = 26
"""At 2025-06-18 the four [2025-11-25]-only scenarios (14 checks) are left out."""

MIN_ALL_PASSED = {"2026-07-28": 152, "2025-11-25": 84}
"""alpha.12 ``--suite all --spec-version V``: checks we pass (python-sdk's server: 152, 84)."""
EXTENSION_PREFIXES = ("tasks-", "sep-2640-skills-")
"""Extension scenarios (tasks, skills): never part of the ``--spec-version`` legs."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TOTAL = re.compile(r"^Total: (\d+) passed, (\d+) failed\s*$", re.MULTILINE)
_SUITE_SIZE = re.compile(r"^Running \w+ suite \((\d+) scenarios\)", re.MULTILINE)
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def conformance_tools() -> ConformanceTools:
    """Node 22 + both pinned CLIs, installed into ``.tools/conformance`` once per run."""
    return ensure_conformance_tools()


@pytest.fixture
def conformance_server() -> StreamableHTTPApp:
    """A fresh ``app`` from ``examples/conformance_server.py`` (module re-executed).

    The app, not only its ``server``: the list-change tools notify through
    the manager of the app that serves them.
    """
    module = load_example("conformance_server")
    app = module.app
    assert isinstance(app, StreamableHTTPApp)
    assert isinstance(module.server, McpServer)
    assert app.server is module.server
    return app


# -- helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CliRun:
    """One finished CLI run: exit status, de-coloured output and the parsed checks."""

    args: list[str]
    returncode: int
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)
    checks: dict[str, list[dict[str, Any]]] = field(repr=False)
    """Scenario name → its ``checks.json`` entries."""

    def tail(self, lines: int = TAIL_LINES) -> str:
        out = "\n".join(self.stdout.splitlines()[-lines:])
        err = "\n".join(self.stderr.splitlines()[-lines:])
        return (
            f"\n$ conformance {' '.join(self.args)}  (exit {self.returncode})"
            f"\n--- stdout (tail) ---\n{out}\n--- stderr (tail) ---\n{err}"
        )

    def statuses(self, scenario: str) -> dict[str, list[str]]:
        """Check id → statuses (an id can repeat, e.g. the INFO traffic log)."""
        by_id: dict[str, list[str]] = {}
        for check in self.checks[scenario]:
            by_id.setdefault(str(check.get("id")), []).append(str(check.get("status")))
        return by_id

    def bad_checks(self, *bad: str) -> list[str]:
        """``scenario/check-id: STATUS (description)`` of each check whose status is in ``bad``."""
        found = []
        for scenario, checks in sorted(self.checks.items()):
            for check in checks:
                if check.get("status") in bad:
                    found.append(
                        f"{scenario}/{check.get('id')}: {check.get('status')}"
                        f" ({check.get('errorMessage') or check.get('description')})"
                    )
        return found

    def total(self) -> tuple[int, int]:
        """``(passed, failed)`` from the final ``Total: X passed, Y failed`` line."""
        matches = _TOTAL.findall(self.stdout)
        assert matches, "no 'Total: X passed, Y failed' summary" + self.tail()
        passed, failed = matches[-1]
        return int(passed), int(failed)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def read_checks(output_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Parse every ``<output_dir>/server-<scenario>-<timestamp>/checks.json``."""
    checks: dict[str, list[dict[str, Any]]] = {}
    if not output_dir.is_dir():
        return checks
    for path in sorted(output_dir.glob("*/checks.json")):
        match = _RESULT_DIR.match(path.parent.name)
        assert match, f"unexpected result directory name: {path.parent}"
        scenario = match["scenario"]
        assert scenario not in checks, f"scenario {scenario!r} reported twice"
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, list), f"{path}: not a JSON array"
        assert all(isinstance(c, dict) for c in data), f"{path}: not an array of objects"
        checks[scenario] = data
    return checks


async def run_cli(tools: ConformanceTools, cli: Path, args: list[str], output_dir: Path) -> CliRun:
    """Run ``conformance <args> -o <output_dir>`` without blocking the trio loop."""
    full_args = [*args, "-o", str(output_dir)]
    with trio.fail_after(CLI_DEADLINE):
        done = await run_conformance_async(tools, cli, full_args)
    return CliRun(
        args=full_args,
        returncode=done.returncode,
        stdout=strip_ansi(done.stdout),
        stderr=strip_ansi(done.stderr),
        checks=read_checks(output_dir),
    )


def assert_no_tracebacks(tracebacks: TracebackRecorder, run: CliRun) -> None:
    assert not tracebacks.records, (
        "the server logged tracebacks during the run:\n" + tracebacks.describe() + run.tail()
    )


# -- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec_version", "min_passed"),
    [
        pytest.param(None, MIN_ACTIVE_PASSED, id="default-2025-11-25"),
        pytest.param("2025-06-18", MIN_ACTIVE_PASSED_2025_06_18, id="2025-06-18"),
    ],
)
async def test_active_suite(
    spec_version: str | None,
    min_passed: int,
    conformance_tools: ConformanceTools,
    conformance_server: StreamableHTTPApp,
    start_server: StartServer,
    tracebacks: TracebackRecorder,
    tmp_path: Path,
) -> None:
    """0.1.16 ``server --url URL`` (active suite): exit 0, nothing failed or warned."""
    url = await start_server(conformance_server)
    args = ["server", "--url", url]
    if spec_version is not None:
        args += ["--spec-version", spec_version]
    run = await run_cli(conformance_tools, conformance_tools.stable_cli, args, tmp_path / "out")

    assert run.returncode == 0, run.tail()
    passed, failed = run.total()
    assert failed == 0, run.tail()
    assert passed >= min_passed, run.tail()
    size = _SUITE_SIZE.search(run.stdout)
    assert size, "no 'Running active suite (N scenarios)' header" + run.tail()
    assert len(run.checks) == int(size[1]), (
        f"{len(run.checks)} checks.json files for {size[1]} scenarios: {sorted(run.checks)}"
        + run.tail()
    )
    assert sum(len(c) for c in run.checks.values()) >= passed, run.tail()
    assert not run.bad_checks("FAILURE", "WARNING"), (
        "\n".join(run.bad_checks("FAILURE", "WARNING")) + run.tail()
    )
    assert_no_tracebacks(tracebacks, run)


async def test_pending_json_schema_2020_12(
    conformance_tools: ConformanceTools,
    conformance_server: StreamableHTTPApp,
    start_server: StartServer,
    tracebacks: TracebackRecorder,
    tmp_path: Path,
) -> None:
    """Pending ``json-schema-2020-12``: all four checks succeed."""
    url = await start_server(conformance_server)
    run = await run_cli(
        conformance_tools,
        conformance_tools.stable_cli,
        ["server", "--url", url, "--scenario", "json-schema-2020-12"],
        tmp_path / "out",
    )

    assert run.returncode == 0, run.tail()
    assert list(run.checks) == ["json-schema-2020-12"], run.tail()
    checks = run.checks["json-schema-2020-12"]
    assert len(checks) == 4, run.tail()
    assert [c.get("status") for c in checks] == ["SUCCESS"] * 4, (
        "\n".join(run.bad_checks("FAILURE", "WARNING", "INFO", "SKIPPED")) + run.tail()
    )
    assert_no_tracebacks(tracebacks, run)


async def test_pending_server_sse_polling(
    conformance_tools: ConformanceTools,
    conformance_server: StreamableHTTPApp,
    start_server: StartServer,
    tracebacks: TracebackRecorder,
    tmp_path: Path,
) -> None:
    """Pending ``server-sse-polling``: priming event, ``retry:`` and resume all succeed."""
    url = await start_server(conformance_server)
    run = await run_cli(
        conformance_tools,
        conformance_tools.stable_cli,
        ["server", "--url", url, "--scenario", "server-sse-polling"],
        tmp_path / "out",
    )

    assert run.returncode == 0, run.tail()
    assert list(run.checks) == ["server-sse-polling"], run.tail()
    assert not run.bad_checks("FAILURE", "WARNING"), (
        "\n".join(run.bad_checks("FAILURE", "WARNING")) + run.tail()
    )
    statuses = run.statuses("server-sse-polling")
    # The reference SDK server only gets WARNINGs here; we must score SUCCESS.
    for check_id in (
        "server-sse-priming-event",
        "server-sse-retry-field",
        "server-sse-disconnect-resume",
    ):
        assert statuses.get(check_id) == ["SUCCESS"], f"{check_id}: {statuses}" + run.tail()
    assert_no_tracebacks(tracebacks, run)


async def test_next_server_session_lifecycle(
    conformance_tools: ConformanceTools,
    conformance_server: StreamableHTTPApp,
    start_server: StartServer,
    tracebacks: TracebackRecorder,
    tmp_path: Path,
) -> None:
    """0.2.0-alpha.12 ``server-session-lifecycle``: DELETE, then 404 for the dead ID."""
    url = await start_server(conformance_server)
    run = await run_cli(
        conformance_tools,
        conformance_tools.next_cli,
        [
            "server",
            "--url",
            url,
            "--scenario",
            "server-session-lifecycle",
            "--spec-version",
            "2025-11-25",
        ],
        tmp_path / "out",
    )

    assert run.returncode == 0, run.tail()
    assert list(run.checks) == ["server-session-lifecycle"], run.tail()
    checks = run.checks["server-session-lifecycle"]
    assert checks, run.tail()
    assert all(c.get("status") == "SUCCESS" for c in checks), (
        "\n".join(run.bad_checks("FAILURE", "WARNING", "INFO", "SKIPPED")) + run.tail()
    )
    assert "server-session-terminated-returns-404" in run.statuses("server-session-lifecycle"), (
        run.tail()
    )
    assert_no_tracebacks(tracebacks, run)


@pytest.mark.parametrize("spec_version", ["2026-07-28", "2025-11-25"])
async def test_next_suite_all(
    spec_version: str,
    conformance_tools: ConformanceTools,
    conformance_server: StreamableHTTPApp,
    start_server: StartServer,
    tracebacks: TracebackRecorder,
    tmp_path: Path,
) -> None:
    """alpha.12 ``--suite all --spec-version V``, no expected-failures file: 0 failed checks.

    Not one check may fail or warn, at either version.
    """
    url = await start_server(conformance_server)
    args = ["server", "--url", url, "--suite", "all", "--spec-version", spec_version]
    assert not any(a.startswith("--expected-failures") for a in args)
    run = await run_cli(conformance_tools, conformance_tools.next_cli, args, tmp_path / "out")

    passed, failed = run.total()
    size = _SUITE_SIZE.search(run.stdout)
    assert size, "no 'Running all suite (N scenarios)' header" + run.tail()
    assert len(run.checks) == int(size[1]), (
        f"{len(run.checks)} checks.json files for {size[1]} scenarios: {sorted(run.checks)}"
        + run.tail()
    )
    extensions = [s for s in run.checks if s.startswith(EXTENSION_PREFIXES)]
    assert not extensions, f"extension scenarios ran: {extensions}" + run.tail()

    bad = run.bad_checks("FAILURE", "WARNING")
    assert not bad, "\n".join(bad) + run.tail()
    assert failed == 0, run.tail()
    assert run.returncode == 0, run.tail()
    assert passed >= MIN_ALL_PASSED[spec_version], run.tail()
    assert_no_tracebacks(tracebacks, run)
