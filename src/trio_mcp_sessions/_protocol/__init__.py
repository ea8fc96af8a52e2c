"""The sans-IO protocol core: JSON-RPC framing and the MCP lifecycle.

This package imports neither trio nor Hypercorn.
"""
