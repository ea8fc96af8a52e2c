"""Sans-IO HTTP rules: Accept, Content-Type, Host/Origin policy, SSE framing."""

from __future__ import annotations

import pytest

from trio_mcp_sessions import HostPolicy
from trio_mcp_sessions._transport._http import (
    accepts,
    encode_sse,
    is_json_content_type,
    split_host,
)


@pytest.mark.parametrize(
    ("header", "media", "ok"),
    [
        ("application/json, text/event-stream", "text/event-stream", True),
        ("application/json", "text/event-stream", False),
        ("*/*", "text/event-stream", True),
        ("text/*", "text/event-stream", True),
        ("text/event-stream;q=0", "text/event-stream", False),
        ("TEXT/EVENT-STREAM", "text/event-stream", True),
        (None, "application/json", False),
        ("", "application/json", False),
    ],
)
def test_accepts(header: str | None, media: str, ok: bool) -> None:
    assert accepts(header, media) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("text/plain", False),
        (None, False),
    ],
)
def test_content_type(value: str | None, ok: bool) -> None:
    assert is_json_content_type(value) is ok


def test_split_host() -> None:
    assert split_host("Example.com:8080") == ("example.com", 8080)
    assert split_host("[::1]:9") == ("[::1]", 9)
    assert split_host("localhost") == ("localhost", None)


@pytest.mark.parametrize(
    ("host", "bound", "ok"),
    [
        ("127.0.0.1:8000", "127.0.0.1", True),
        ("localhost:1", "127.0.0.1", True),
        ("[::1]:8000", "::1", True),
        ("evil.example.com", "127.0.0.1", False),
        (None, "127.0.0.1", False),
        ("anything.example", "10.0.0.5", True),
    ],
)
def test_default_host_policy(host: str | None, bound: str, ok: bool) -> None:
    assert HostPolicy().host_allowed(host, bound) is ok


def test_explicit_hosts() -> None:
    policy = HostPolicy(allowed_hosts=("mcp.example.com", "*.internal", "api.example.com:443"))
    assert policy.host_allowed("mcp.example.com:8443", "10.0.0.1")
    assert policy.host_allowed("a.internal", "10.0.0.1")
    assert policy.host_allowed("api.example.com:443", "10.0.0.1")
    assert not policy.host_allowed("api.example.com:80", "10.0.0.1")
    assert not policy.host_allowed("localhost", "127.0.0.1")


@pytest.mark.parametrize(
    ("origin", "host", "bound", "ok"),
    [
        (None, "127.0.0.1", "127.0.0.1", True),
        ("http://localhost:5173", "127.0.0.1:8000", "127.0.0.1", True),
        ("http://evil.example.com", "127.0.0.1:8000", "127.0.0.1", False),
        ("null", "127.0.0.1:8000", "127.0.0.1", False),
        ("https://app.example.com", "app.example.com", "10.0.0.1", True),
        ("https://evil.example.com", "app.example.com", "10.0.0.1", False),
    ],
)
def test_default_origin_policy(origin: str | None, host: str, bound: str, ok: bool) -> None:
    assert HostPolicy().origin_allowed(origin, host, bound) is ok


def test_explicit_origins() -> None:
    policy = HostPolicy(allowed_origins=("https://app.example.com", "http://localhost:*"))
    assert policy.origin_allowed("https://app.example.com", "x", "10.0.0.1")
    assert policy.origin_allowed("http://localhost:3000", "x", "10.0.0.1")
    assert not policy.origin_allowed("http://app.example.com", "x", "10.0.0.1")


def test_sse_framing() -> None:
    assert encode_sse("s_0", b"", 1000) == b"id: s_0\nretry: 1000\ndata: \n\n"
    assert encode_sse("s_1", b'{"a":1}') == b'id: s_1\nevent: message\ndata: {"a":1}\n\n'
    assert encode_sse(None, b"", 500) == b"retry: 500\n\n"
    assert encode_sse("s_2", b"a\nb") == b"id: s_2\nevent: message\ndata: a\ndata: b\n\n"
