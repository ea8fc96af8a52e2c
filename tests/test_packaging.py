"""What a PyPI user gets: the built wheel and sdist, used away from this checkout.

One build (``python -m build``: the sdist, then the wheel from the sdist, so
the sdist is known to build), one fresh venv in ``tmp_path`` with the wheel
and the few test dependencies of the quick subset installed from the package
index as usual. Then, from a folder outside the checkout: ``--version``, the
shipped notes example served on 127.0.0.1:0 and initialized, and a quick
subset of the unpacked sdist's own tests run against the installed wheel.
Every step has a deadline; together they stay well under three minutes
(about 30 s on a warm pip cache).
"""

from __future__ import annotations

import email
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from conftest import INIT_HEADERS, initialize_body

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]

#: The unpacked sdist's tests this file runs: the protocol core, the era
#: ladder, a shipped example over HTTP, the layers and the README's commands.
SDIST_SUBSET = (
    "tests/test_protocol.py",
    "tests/test_era.py",
    "tests/test_example_booking.py",
    "tests/test_layers.py",
    "tests/test_docs.py",
)
#: Never sources: build state, caches, installed toolchains, venvs.
NOT_SOURCES = (
    ".git",
    ".venv",
    ".tools",
    "*.egg-info",
    "build",
    "dist",
    "_build",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "node_modules",
    "results",
)
#: What that subset needs beside the wheel (pinned as in the ``test`` extra).
SUBSET_NEEDS = ("pytest", "pytest-trio", "hypothesis", "httpx")


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    build_output: str
    python: Path  # the fresh venv's interpreter, with the wheel installed
    elsewhere: Path  # an empty folder outside the checkout


def _env() -> dict[str, str]:
    """This environment minus what would point a child at the checkout's venv or sources."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _run(args: list[str | Path], *, timeout: float, cwd: Path) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=_env(),
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{args[:4]} failed:\n{output[-4000:]}"
    return output


def _subset_requirements() -> list[str]:
    wanted = set(SUBSET_NEEDS)
    return [r for r in PYPROJECT["project"]["optional-dependencies"]["test"] if _name(r) in wanted]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("packaging")
    # Built from a copy without the checkout's build state: a stale egg-info
    # SOURCES.txt would put files in the sdist that a fresh clone's would lack.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    dist = base / "dist"
    output = _run([sys.executable, "-m", "build", "--outdir", dist, source], timeout=150, cwd=base)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", venv], timeout=60, cwd=base)
    python = venv / "bin" / "python"
    pip: list[str | Path] = [python, "-m", "pip", "install", "-q", wheel, *_subset_requirements()]
    _run(pip, timeout=150, cwd=base)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return Built(wheel, sdist, output, python, elsewhere)


def test_the_build_is_clean_and_the_metadata_complete(built: Built) -> None:
    # The table form of ``license`` made setuptools warn it would stop building.
    assert "deprecat" not in built.build_output.lower(), built.build_output[-4000:]
    with zipfile.ZipFile(built.wheel) as wheel:
        names = wheel.namelist()
        info = f"trio_mcp_sessions-{VERSION}.dist-info"
        metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
    assert f"{info}/licenses/LICENSE" in names
    assert "trio_mcp_sessions/py.typed" in names
    assert "trio_mcp_sessions/examples/notes.py" in names
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier") or []
    assert "Framework :: Trio" in classifiers
    assert "Typing :: Typed" in classifiers
    assert metadata["Keywords"]
    # Nothing of the test harness is installed.
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/"))]


def test_the_wheel_works_from_a_folder_outside_the_checkout(built: Built) -> None:
    where = _run(
        [built.python, "-c", "import trio_mcp_sessions; print(trio_mcp_sessions.__file__)"],
        timeout=60,
        cwd=built.elsewhere,
    )
    assert Path(where.strip()).is_relative_to(built.python.parent.parent), where
    version = _run(
        [built.python, "-m", "trio_mcp_sessions", "--version"], timeout=60, cwd=built.elsewhere
    )
    assert version.strip() == f"trio-mcp-sessions {VERSION}"


async def test_the_shipped_notes_example_serves_from_anywhere(built: Built) -> None:
    process = await trio.lowlevel.open_process(
        [
            str(built.python),
            "-m",
            "trio_mcp_sessions",
            "serve",
            "trio_mcp_sessions.examples.notes:server",
            "--bind",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=built.elsewhere,
        env={**_env(), "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    try:
        printed = b""
        with trio.fail_after(30):
            while (found := re.search(rb"http://127\.0\.0\.1:\d+/\S*", printed)) is None:
                chunk = await process.stdout.receive_some()
                assert chunk, f"the server exited before printing its URL: {printed!r}"
                printed += chunk
        url = found.group().decode()
        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.post(url, json=initialize_body(), headers=INIT_HEADERS)
        assert reply.status_code == 200, reply.text
        assert reply.headers["mcp-session-id"]
        assert '"notes"' in reply.text  # serverInfo.name of the notes example
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_the_unpacked_sdist_runs_its_own_tests(built: Built) -> None:
    unpacked = built.elsewhere.parent / "sdist"
    with tarfile.open(built.sdist) as sdist:
        sdist.extractall(unpacked, filter="data")
    (root,) = unpacked.iterdir()
    for harness in (
        "tests/conftest.py",
        "tests/_harness.py",
        "tests/_redis_server.py",
        "tests/_conformance_tools.py",
        "tests/conformance/package.json",
        "tests/conformance/package-lock.json",
        "tests/ts_client/client.mjs",
        "tests/_oidc_provider.py",
        "tests/oidc/provider.mjs",
        "tests/ts_client/oauth_client.mjs",
        "examples/notes_server.py",
        "examples/conformance_server.py",
        "bench/loadgen.py",
        ".ci/run",
        "LICENSE",
        "CHANGELOG.md",
    ):
        assert (root / harness).is_file(), f"the sdist lacks {harness}"
    assert not list(root.rglob("node_modules")), "the sdist carries an installed toolchain"
    output = _run(
        [built.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SDIST_SUBSET],
        timeout=120,
        cwd=root,
    )
    assert re.search(r"\d+ passed", output), output[-4000:]
