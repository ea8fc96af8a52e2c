"""A small, real MCP server: a notebook with search, tags and statistics.

It ships in the package, so it runs wherever trio-mcp-sessions is installed
(bounded sessions on 127.0.0.1, in-memory stores)::

    python -m trio_mcp_sessions serve trio_mcp_sessions.examples.notes:server --bind 127.0.0.1:8000

or ``python -m trio_mcp_sessions.examples.notes``, or with Hypercorn's own command line:
``hypercorn --worker-class trio --bind 127.0.0.1:8000 trio_mcp_sessions.examples.notes:app``.
Point any MCP client at ``http://127.0.0.1:8000/mcp``. In a checkout,
``examples/notes_server.py`` is this server.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import trio

from trio_mcp_sessions import (
    Context,
    McpServer,
    SessionLimits,
    StreamableHTTPApp,
    ToolError,
    serve,
)

server = McpServer(
    "notes",
    "1.0.0",
    instructions="A shared notebook. Add notes with tags, search them, and ask for statistics.",
)


@dataclass
class Note:
    id: int
    title: str
    body: str
    tags: list[str] = field(default_factory=list)


_notes: dict[int, Note] = {}
_ids = itertools.count(1)


@server.tool()
def add_note(title: str, body: str, tags: list[str] | None = None) -> dict[str, Any]:
    """Add a note to the notebook.

    Args:
        title: A short title.
        body: The note's text.
        tags: Optional tags, for example ["work", "idea"].
    """
    if not title.strip():
        raise ToolError("a note needs a title")
    note = Note(next(_ids), title.strip(), body, sorted(set(tags or [])))
    _notes[note.id] = note
    return asdict(note)


@server.tool()
def search_notes(
    query: Annotated[str, "Words to look for (case-insensitive)"] = "",
    tag: Annotated[str | None, "Only notes with this tag"] = None,
) -> dict[str, Any]:
    """Find notes whose title or body contains every word of the query."""
    words = [w.lower() for w in query.split()]
    hits = [
        asdict(n)
        for n in _notes.values()
        if (tag is None or tag in n.tags) and all(w in f"{n.title} {n.body}".lower() for w in words)
    ]
    return {"count": len(hits), "notes": hits}


@server.tool()
def delete_note(note_id: int) -> str:
    """Delete a note by id.

    Args:
        note_id: The id returned by add_note.
    """
    if _notes.pop(note_id, None) is None:
        raise ToolError(f"no note with id {note_id}")
    return f"deleted note {note_id}"


@server.tool()
async def word_statistics(ctx: Context, top: int = 10) -> dict[str, Any]:
    """Count words across all notes, reporting progress as it goes.

    Args:
        top: How many of the most common words to return.
    """
    counts: Counter[str] = Counter()
    notes = list(_notes.values())
    for index, note in enumerate(notes, start=1):
        counts.update(re.findall(r"[a-z']+", f"{note.title} {note.body}".lower()))
        await ctx.report_progress(index, len(notes), f"read note {note.id}")
        await trio.lowlevel.checkpoint()
    await ctx.info(f"counted {sum(counts.values())} words in {len(notes)} notes")
    return {"notes": len(notes), "words": sum(counts.values()), "top": counts.most_common(top)}


@server.resource("notes://all", mime_type="application/json")
def all_notes() -> str:
    """Every note, as JSON."""
    return json.dumps([asdict(n) for n in _notes.values()])


@server.resource("notes://{note_id}", mime_type="text/markdown")
def one_note(note_id: str) -> str:
    """One note as Markdown."""
    note = _notes.get(int(note_id)) if note_id.isdigit() else None
    if note is None:
        raise ToolError(f"no note {note_id}")
    tags = " ".join(f"#{t}" for t in note.tags)
    return f"# {note.title}\n\n{note.body}\n\n{tags}".rstrip() + "\n"


@server.prompt()
def summarize(tag: str = "") -> str:
    """Ask the model to summarize the notebook (or the notes with one tag).

    Args:
        tag: Only notes with this tag; empty for all.
    """
    chosen = [n for n in _notes.values() if not tag or tag in n.tags]
    listing = "\n".join(f"- {n.title}: {n.body}" for n in chosen) or "(no notes)"
    return f"Summarize these notes in three bullet points:\n{listing}"


@server.completion()
def complete(ref: dict[str, Any], argument: dict[str, Any], context: Any) -> list[str]:
    """Complete tag names for the summarize prompt."""
    if argument.get("name") == "tag":
        typed = str(argument.get("value", ""))
        return sorted({t for n in _notes.values() for t in n.tags if t.startswith(typed)})
    return []


limits = SessionLimits(max_sessions=1000, idle_timeout=600)

#: For ``hypercorn --worker-class trio ... trio_mcp_sessions.examples.notes:app``.
app = StreamableHTTPApp(server, limits=limits)


async def main() -> None:
    """Serve the notebook on 127.0.0.1:8000 until Ctrl-C."""
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            lambda task_status: serve(server, limits=limits, task_status=task_status)
        )
        print(f"Serving MCP on {urls[0]}/mcp (Ctrl-C to stop)", flush=True)


if __name__ == "__main__":
    trio.run(main)
