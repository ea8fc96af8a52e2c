"""Example servers that ship with the package, so they run wherever it is installed.

``python -m trio_mcp_sessions serve trio_mcp_sessions.examples.notes:server`` serves the
notebook; :mod:`~trio_mcp_sessions.examples.booking` asks the user in both eras and
:mod:`~trio_mcp_sessions.examples.cart` keeps state behind server-minted handles.
They use only the public API (``from trio_mcp_sessions import ...``), as your own server
would; ``import trio_mcp_sessions`` never imports them.
"""
