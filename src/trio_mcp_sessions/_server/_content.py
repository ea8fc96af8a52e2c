"""Helpers that build MCP content blocks and results as plain JSON objects."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ToolResult",
    "audio_content",
    "embedded_resource",
    "image_content",
    "resource_link",
    "text_content",
]

CONTENT_TYPES = frozenset({"text", "image", "audio", "resource", "resource_link"})


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A full ``CallToolResult`` when returning a plain value is not enough."""

    content: list[dict[str, Any]] = field(default_factory=list)
    structured_content: dict[str, Any] | None = None
    is_error: bool = False
    meta: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"content": self.content}
        if self.structured_content is not None:
            out["structuredContent"] = self.structured_content
        if self.is_error:
            out["isError"] = True
        if self.meta is not None:
            out["_meta"] = self.meta
        return out


def _b64(data: bytes | str) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode("ascii")


def text_content(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": text, **extra}


def image_content(data: bytes | str, mime_type: str, **extra: Any) -> dict[str, Any]:
    """An image block; *data* is raw bytes or an already base64-encoded string."""
    return {"type": "image", "data": _b64(data), "mimeType": mime_type, **extra}


def audio_content(data: bytes | str, mime_type: str, **extra: Any) -> dict[str, Any]:
    """An audio block; *data* is raw bytes or an already base64-encoded string."""
    return {"type": "audio", "data": _b64(data), "mimeType": mime_type, **extra}


def embedded_resource(
    uri: str,
    *,
    text: str | None = None,
    blob: bytes | str | None = None,
    mime_type: str | None = None,
) -> dict[str, Any]:
    """A ``resource`` block carrying the resource's contents inline."""
    if (text is None) == (blob is None):
        raise ValueError("pass exactly one of text= or blob=")
    resource: dict[str, Any] = {"uri": uri}
    if mime_type is not None:
        resource["mimeType"] = mime_type
    if text is not None:
        resource["text"] = text
    else:
        assert blob is not None
        resource["blob"] = _b64(blob)
    return {"type": "resource", "resource": resource}


def resource_link(uri: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "resource_link", "uri": uri, "name": name, **extra}
