"""The README's two commands stay true: .ci/run runs the test command verbatim."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", readme)[:2]


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    run, test = _readme_commands()
    assert readme.index(run) < readme.index(test) < readme.index("## ")
    assert "serve examples/notes_server.py:server --bind 127.0.0.1:" in run
    assert "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    _, test = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()


def test_example_file_named_in_the_readme_exists() -> None:
    run, _ = _readme_commands()
    target = re.search(r"serve (\S+?):", run)
    assert target is not None
    assert (ROOT / target.group(1)).is_file()


def _readme_server_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A server in a few lines") :]
    match = re.search(r"```python\n(.+?)\n```", section, re.S)
    assert match is not None
    return match.group(1)


async def test_the_readme_s_few_lines_server_runs(tmp_path: Path) -> None:
    """The README's quick start, as written: importable (its __main__ guard), and it answers."""
    from trio_mcp_sessions.testing import open_test_client

    path = tmp_path / "weather.py"
    path.write_text(_readme_server_block())
    spec = importlib.util.spec_from_file_location("readme_weather", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # serves nothing: the guard
    async with open_test_client(module.server) as client:
        info = await client.initialize()
        assert info["serverInfo"]["name"] == "weather"
        result = await client.call_tool("forecast", {"city": "Paris", "days": 2})
        assert result["content"][0]["text"] == "Sunny in Paris for 2 days"
        prompt = await client.request(
            "prompts/get", {"name": "trip", "arguments": {"city": "Oslo"}}
        )
        assert prompt.status == 200
