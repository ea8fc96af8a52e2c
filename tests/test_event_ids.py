"""SSE event ids, sans-IO: made and parsed in one place (no trio, no HTTP)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_mcp_sessions._protocol._event_ids import (
    event_id,
    is_standalone,
    parse_event_id,
    stream_id,
)


def test_the_kind_survives_in_the_id() -> None:
    get, post = stream_id(standalone=True, unique="a1"), stream_id(standalone=False, unique="a1")
    assert get != post
    assert is_standalone(get)
    assert not is_standalone(post)
    assert parse_event_id(event_id(get, 7)) == (get, 7)


@given(
    unique=st.text(min_size=0, max_size=40),
    standalone=st.booleans(),
    seq=st.integers(min_value=0, max_value=10**18 - 1),
)
def test_every_id_made_parses_back(unique: str, standalone: bool, seq: int) -> None:
    stream = stream_id(standalone=standalone, unique=unique)
    parsed = parse_event_id(event_id(stream, seq))
    assert parsed == (stream, seq)
    assert is_standalone(parsed[0]) is standalone


@pytest.mark.parametrize(
    "value",
    [
        "",
        "_",
        "g1",
        "g1_",
        "_5",
        "g1_x",
        "g1_-1",
        "g1_+1",
        "g1_1.0",
        "g1_²",
        "g1_\u0661",  # ARABIC-INDIC DIGIT ONE: isdigit(), not ASCII
        "g1_" + "9" * 19,
    ],
)
def test_anything_else_is_refused(value: str) -> None:
    assert parse_event_id(value) is None


@given(st.text(max_size=60))
def test_hostile_text_parses_or_is_refused_never_raises(value: str) -> None:
    parsed = parse_event_id(value)
    if parsed is not None:
        stream, seq = parsed
        assert value == event_id(stream, seq)
