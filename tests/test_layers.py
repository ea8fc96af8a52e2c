"""The layers are true: every module imports only from the layers it may use.

transport → manager → sessions → server API → protocol core, with the
session-manager interface (``_interface``, ``_streams``) as the vocabulary
between transport and sessions: the transport never imports ``_session``, so
a custom :class:`SessionManager` built on the public API can replace it.
Imports under ``if TYPE_CHECKING:`` (annotations only) are checked too, with
the looser rule of each layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "trio_mcp_sessions"

#: Who may import whom: (module prefixes of the layer, runtime imports, type-only imports).
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "entry points": (("<pkg>", "__main__", "_cli", "_serve", "testing"), ("",), ("",)),
    "transport": (
        ("_transport", "_metrics"),
        (
            "_transport",
            "_metrics",
            "_interface",
            "_streams",
            "_protocol",
            "_errors",
            "_options",
            "_auth",
        ),
        (
            "_ratelimit",
            "_server._server",
            "_stores._base",
            "_serve",
            "_manager",
            "_stateless",
            "_handles",
        ),
    ),
    "manager": (
        ("_manager",),
        (
            "_manager",
            "_options",
            "_interface",
            "_streams",
            "_session",
            "_errors",
            "_protocol",
            "_ratelimit",
            "_stores",
        ),
        ("_server._server",),
    ),
    # The options: plain data every layer above reads its defaults from. It
    # reads only plain-data modules (the bounds, the input limits, the host
    # policy, the store constants), never a running part.
    "options": (
        ("_options",),
        (
            "_interface",
            "_protocol._jsonrpc",
            "_protocol._deadline",
            "_manager._limits",
            "_stores._guard",
            "_transport._http",
            "_auth._config",
            "_auth._types",
        ),
        (),
    ),
    "sessions": (
        ("_session",),
        ("_session", "_interface", "_streams", "_errors", "_protocol", "_server", "_stores"),
        (),
    ),
    # The 2026-07-28 half: one request at a time, no session; beside the sessions.
    "sessionless": (
        ("_stateless",),
        ("_stateless", "_interface", "_streams", "_errors", "_protocol", "_server"),
        (),
    ),
    "server API": (("_server",), ("_server", "_protocol"), ("_auth._types",)),
    # Bounded handles: a library for tool code, on the server API's errors and
    # the stores' plumbing (a SQLite database, a Redis client).
    "handles": (("_handles",), ("_handles", "_errors", "_server", "_stores"), ()),
    # The OAuth 2.1 resource server: plain data and the challenges' arithmetic,
    # and the verifiers (their own HTTP client); the transport asks it.
    "auth": (("_auth",), ("_auth", "_errors", "_protocol", "_ratelimit"), ()),
    "stores": (("_stores",), ("_stores", "_errors"), ("_ratelimit",)),
    "interface": (
        ("_interface", "_streams"),
        ("_errors",),
        ("_protocol", "_streams", "_auth._types"),
    ),
    "protocol core": (("_protocol", "_errors", "_ratelimit"), ("_protocol",), ()),
}

#: The runtime edges from the transport into the layers below the interface: the
#: app builds the default BoundedSessionManager (its data path uses the
#: interface) and the sessionless service.
EXCEPTIONS = {("_transport._asgi", "_manager"), ("_transport._asgi", "_stateless")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "<pkg>"


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(runtime, type-only) imports of package modules, as names like ``_stores._base``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    runtime: set[str] = set()
    type_only: set[str] = set()

    def visit(body: list[ast.stmt], annotations_only: bool) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.body, True)
                visit(node.orelse, annotations_only)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = [p for p in package.split(".") if p and p != "<pkg>"]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                    (type_only if annotations_only else runtime).add(target or "<pkg>")
                elif (node.module or "").startswith("trio_mcp_sessions"):
                    raise AssertionError(f"{module}: import the package relatively")
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("trio_mcp_sessions") for a in node.names)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list):
                        visit([n for n in inner if isinstance(n, ast.stmt)], annotations_only)
                    for handler in inner if field == "handlers" and inner else ():
                        visit(handler.body, annotations_only)

    visit(ast.parse(path.read_text()).body, False)
    return runtime, type_only


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def _layer_of(module: str) -> str:
    matches = [
        (max(len(p) for p in prefixes if _under(module, (p,))), layer)
        for layer, (prefixes, _, _) in LAYERS.items()
        if _under(module, prefixes)
    ]
    assert matches, f"{module} belongs to no layer: add it to LAYERS"
    return max(matches)[1]


#: The shipped example servers: user code, outside the layers (see the tests below).
EXAMPLES = PACKAGE / "examples"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if EXAMPLES not in p.parents)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_follow_the_layers(path: Path) -> None:
    module = _module_name(path)
    layer = _layer_of(module)
    _, allowed, type_allowed = LAYERS[layer]
    runtime, type_only = _imports(path)
    wrong = sorted(
        target
        for target in runtime
        if not _under(target, allowed) and (module, target.split(".")[0]) not in EXCEPTIONS
    )
    assert not wrong, f"{module} ({layer}) imports {wrong} at run time"
    wrong = sorted(t for t in type_only if not _under(t, (*allowed, *type_allowed)))
    assert not wrong, f"{module} ({layer}) imports {wrong} for annotations"


def test_the_transport_never_touches_the_session_implementation() -> None:
    for path in (PACKAGE / "_transport").glob("*.py"):
        runtime, type_only = _imports(path)
        assert not any(_under(t, ("_session",)) for t in runtime | type_only), path.name


def test_the_rules_can_fail() -> None:
    # A module that imported upward would be caught: the check is not vacuous.
    _, allowed, _ = LAYERS["protocol core"]
    assert not _under("_session", allowed)
    assert not _under("_transport._asgi", LAYERS["sessions"][1])
    assert _layer_of("_protocol._clock") == "protocol core"
    assert _layer_of("_transport._asgi") == "transport"
    assert _layer_of("_options") == "options"
    assert not _under("_manager._manager", LAYERS["options"][1])


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.stem)
def test_the_examples_use_only_the_public_api(path: Path) -> None:
    # They are what a user copies: ``from trio_mcp_sessions import ...``, nothing private.
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path.name}: a relative import"
            assert node.module != "trio_mcp_sessions" or not any(
                a.name.startswith("_") for a in node.names
            ), path.name
            assert not (node.module or "").startswith("trio_mcp_sessions."), path.name
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("trio_mcp_sessions") for a in node.names), path.name


def test_the_package_never_imports_the_examples() -> None:
    for path in MODULES:
        runtime, type_only = _imports(path)
        assert not any(_under(t, ("examples",)) for t in runtime | type_only), path
    # And at run time (the imports of the libraries it uses included).
    check = "import sys, trio_mcp_sessions; assert 'trio_mcp_sessions.examples' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)
