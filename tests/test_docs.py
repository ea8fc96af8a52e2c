"""The README's two commands stay true: .ci/run runs the test command verbatim."""

from __future__ import annotations

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
