"""The MRTR ``requestState`` codec, sans-IO: plain numbers for time, hostile strings for input."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_mcp_sessions._protocol._jsonrpc import INVALID_PARAMS
from trio_mcp_sessions._protocol._request_state import (
    InvalidRequestState,
    RequestStateBinding,
    RequestStateCodec,
    RequestStateTooLarge,
    TooManyRounds,
    UsedStates,
    params_digest,
)

K1, K2 = b"\x01" * 32, b"\x02" * 32
B = RequestStateBinding(
    method="tools/call", name="book", principal="alice", protocol_version="2026-07-28"
)
STATE = {"step": 2, "answers": {"city": "Zürich"}, "list": [1, 2.5, None, True]}


def _refused(reason: str, codec: RequestStateCodec, token: object, **kw: Any) -> None:
    kw.setdefault("binding", B)
    kw.setdefault("now", 100.0)
    with pytest.raises(InvalidRequestState) as info:
        codec.open(token, **kw)
    assert info.value.reason == reason
    assert info.value.code == INVALID_PARAMS
    if isinstance(token, str) and len(token) > 8:
        assert token not in info.value.message


def _parts(token: str) -> list[str]:
    return token.split(".")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip() -> None:
    codec = RequestStateCodec([K1])
    token = codec.seal(STATE, binding=B, now=100.0, round=3)
    opened = codec.open(token, binding=B, now=150.0)
    assert opened.payload == STATE
    assert (opened.round, opened.issued_at, opened.expires_at) == (3, 100.0, 700.0)
    assert token.startswith("rs1.")
    assert token.isascii()
    assert len(_parts(token)) == 4
    again = codec.seal(STATE, binding=B, now=100.0, round=3)
    assert again != token
    assert codec.open(codec.seal({}, binding=B, now=7, round=1), binding=B, now=7).issued_at == 7.0
    assert codec.open(again, binding=B, now=100.0).nonce != opened.nonce


def test_the_default_key_is_per_process_and_random() -> None:
    one, two = RequestStateCodec(), RequestStateCodec()
    token = one.seal({}, binding=B, now=0.0, round=1)
    assert one.open(token, binding=B, now=0.0).payload == {}
    _refused("unknown_key", two, token, now=0.0)


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ([b"short"], ValueError),
        ([K1[:31]], ValueError),
        ([], ValueError),
        ([K1, K1], ValueError),
        (K1, TypeError),
        (["text" * 10], TypeError),
    ],
)
def test_bad_keys_are_refused_clearly(keys: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="key"):
        RequestStateCodec(keys)


@pytest.mark.parametrize(
    "options", [{"ttl": 0.0}, {"ttl": float("inf")}, {"max_bytes": 10}, {"max_rounds": 0}]
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        RequestStateCodec([K1], **options)


def test_tampered_payload_mac_and_key_id() -> None:
    codec = RequestStateCodec([K1])
    token = codec.seal(STATE, binding=B, now=100.0, round=1)
    prefix, payload, kid, mac = _parts(token)
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["r"], forged["s"] = 1, {"step": 99}
    forged_payload = _b64(json.dumps(forged).encode())
    _refused("tampered", codec, f"{prefix}.{forged_payload}.{kid}.{mac}")
    _refused("tampered", codec, f"{prefix}.{payload}.{kid}.{mac[:-2]}AA")
    _refused("tampered", codec, f"{prefix}.{payload}.{kid}.")
    _refused("unknown_key", codec, f"{prefix}.{payload}.{_b64(b'12345678')}.{mac}")
    _refused("malformed", codec, f"rs2.{payload}.{kid}.{mac}")
    _refused("malformed", codec, f"{token}.x")
    _refused("malformed", codec, 12345)
    _refused("malformed", codec, None)


def test_a_token_signed_with_another_key_is_refused_even_with_our_key_id() -> None:
    ours, theirs = RequestStateCodec([K1]), RequestStateCodec([K2])
    token = theirs.seal(STATE, binding=B, now=100.0, round=1)
    _refused("unknown_key", ours, token)
    prefix, payload, _, mac = _parts(token)
    our_kid = _parts(ours.seal({}, binding=B, now=0.0, round=1))[2]
    _refused("tampered", ours, f"{prefix}.{payload}.{our_kid}.{mac}")


def test_rotation_the_new_key_signs_and_the_old_still_opens() -> None:
    old = RequestStateCodec([K1])
    rotated = RequestStateCodec([K2, K1])
    old_token = old.seal(STATE, binding=B, now=100.0, round=1)
    assert rotated.open(old_token, binding=B, now=100.0).payload == STATE
    new_token = rotated.seal(STATE, binding=B, now=100.0, round=1)
    assert _parts(new_token)[2] != _parts(old_token)[2]
    _refused("unknown_key", old, new_token)
    assert RequestStateCodec([K2]).open(new_token, binding=B, now=100.0).payload == STATE


def test_expired_and_not_yet_valid() -> None:
    codec = RequestStateCodec([K1], ttl=60.0, skew=5.0)
    token = codec.seal(STATE, binding=B, now=1000.0, round=1)
    assert codec.open(token, binding=B, now=1060.0).round == 1  # the last valid instant
    _refused("expired", codec, token, now=1060.5)
    assert codec.open(token, binding=B, now=995.0).round == 1  # within the skew
    _refused("expired", codec, token, now=994.0)
    # A shorter TTL configured later applies to tokens already out.
    _refused("expired", RequestStateCodec([K1], ttl=10.0), token, now=1011.0)


@pytest.mark.parametrize(
    "change",
    [
        {"principal": "mallory"},
        {"principal": None},
        {"method": "prompts/get"},
        {"name": "cancel"},
        {"protocol_version": "2026-12-01"},
        {"params": params_digest({"seat": "1A"})},
    ],
)
def test_wrong_binding_per_field(change: dict[str, Any]) -> None:
    codec = RequestStateCodec([K1])
    token = codec.seal(STATE, binding=B, now=100.0, round=1)
    _refused("wrong_binding", codec, token, binding=replace(B, **change))


def test_params_digest_is_canonical() -> None:
    assert params_digest({"a": 1, "b": [2]}) == params_digest({"b": [2], "a": 1})
    assert params_digest({"a": 1}) != params_digest({"a": 2})
    bound = replace(B, params=params_digest({"seat": "2B"}))
    codec = RequestStateCodec([K1])
    token = codec.seal({}, binding=bound, now=0.0, round=1)
    assert codec.open(token, binding=replace(B, params=params_digest({"seat": "2B"})), now=0.0)


def test_oversize_is_refused_both_ways() -> None:
    codec = RequestStateCodec([K1], max_bytes=1024)
    with pytest.raises(RequestStateTooLarge, match="max_bytes=1024"):
        codec.seal({"blob": "x" * 1024}, binding=B, now=0.0, round=1)
    assert len(codec.seal({"blob": "x" * 600}, binding=B, now=0.0, round=1)) <= 1024
    big = RequestStateCodec([K1]).seal({"blob": "x" * 1024}, binding=B, now=100.0, round=1)
    _refused("too_large", codec, big)
    _refused("too_large", codec, "é" * 1025)
    _refused("malformed", codec, "é" * 1000)


def test_too_many_rounds() -> None:
    codec = RequestStateCodec([K1], max_rounds=3)
    assert codec.open(codec.seal({}, binding=B, now=0.0, round=3), binding=B, now=0.0).round == 3
    with pytest.raises(TooManyRounds, match="max_rounds=3"):
        codec.seal({}, binding=B, now=0.0, round=4)
    with pytest.raises(ValueError, match="round"):
        codec.seal({}, binding=B, now=0.0, round=0)
    # A token from a more generous configuration is refused once max_rounds is lowered.
    token = RequestStateCodec([K1], max_rounds=8).seal({}, binding=B, now=0.0, round=5)
    _refused("too_many_rounds", codec, token, now=0.0)


def test_a_token_opens_once_with_used_states() -> None:
    codec = RequestStateCodec([K1], ttl=60.0)
    used = UsedStates(max_entries=10)
    token = codec.seal(STATE, binding=B, now=0.0, round=1)
    assert codec.open(token, binding=B, now=1.0, used=used).payload == STATE
    _refused("replayed", codec, token, now=2.0, used=used)
    _refused("replayed", codec, token, now=60.0, used=used)
    _refused("expired", codec, token, now=61.0, used=used)  # and its nonce is let go
    codec.open(codec.seal({}, binding=B, now=61.0, round=1), binding=B, now=61.0, used=used)
    assert len(used) == 1
    # A refused token (wrong binding) does not consume its one use.
    other = codec.seal({}, binding=B, now=61.0, round=1)
    _refused("wrong_binding", codec, other, now=61.0, used=used, binding=replace(B, name="x"))
    assert codec.open(other, binding=B, now=61.0, used=used)
    stats = used.statistics()
    assert (stats.entries, stats.recorded, stats.replays_refused) == (2, 3, 2)


def test_a_full_used_table_refuses_new_tokens_and_forgets_nothing() -> None:
    codec = RequestStateCodec([K1], ttl=60.0)
    used = UsedStates(max_entries=2)
    tokens = [codec.seal({}, binding=B, now=0.0, round=1) for _ in range(3)]
    codec.open(tokens[0], binding=B, now=0.0, used=used)
    codec.open(tokens[1], binding=B, now=0.0, used=used)
    _refused("replay_cache_full", codec, tokens[2], now=0.0, used=used)
    _refused("replayed", codec, tokens[0], now=0.0, used=used)
    assert used.statistics().full_refused == 1
    later = codec.seal({}, binding=B, now=61.0, round=1)
    codec.open(later, binding=B, now=61.0, used=used)  # the first two expired: room again
    assert len(used) == 1


@given(
    st.integers(1, 5),
    st.lists(
        st.tuples(st.integers(0, 7), st.floats(0, 20), st.floats(0, 3)), min_size=1, max_size=60
    ),
)
def test_used_states_is_bounded_and_never_admits_a_live_nonce_twice(
    max_entries: int, ops: list[tuple[int, float, float]]
) -> None:
    used = UsedStates(max_entries)
    now = 0.0
    admitted: dict[str, float] = {}  # the model: nonce → expiry, of first uses
    for nonce_no, lifetime, step in ops:
        now += step
        nonce = f"n{nonce_no}"
        accepted = used.check_and_record(nonce, now + lifetime, now)
        assert len(used) <= max_entries
        if nonce in admitted and admitted[nonce] >= now:
            assert not accepted
        if accepted:
            admitted[nonce] = now + lifetime
    assert used.statistics().entries == len(used) <= max_entries


CODEC = RequestStateCodec([K1], max_bytes=2048)
VALID = CODEC.seal(STATE, binding=B, now=100.0, round=2)


def _opens_or_refuses(token: object) -> bool:
    try:
        CODEC.open(token, binding=B, now=100.0)
    except InvalidRequestState:
        return False
    return True


@given(st.text(max_size=3000))
def test_arbitrary_text_is_refused_cleanly(text: str) -> None:
    assert not _opens_or_refuses(text)


@given(st.binary(max_size=3000))
def test_arbitrary_bytes_as_text_are_refused_cleanly(data: bytes) -> None:
    assert not _opens_or_refuses(data.decode("latin-1"))
    assert not _opens_or_refuses(data.decode("ascii", "replace"))


def test_every_bit_flip_of_a_valid_token_is_refused() -> None:
    # Exhaustive, base64's spare bits included: each part is compared as the string we minted.
    for bit in range(len(VALID) * 8):
        raw = bytearray(VALID.encode())
        raw[bit // 8] ^= 1 << (bit % 8)
        assert not _opens_or_refuses(raw.decode("latin-1")), bit


@given(st.lists(st.sampled_from([*_parts(VALID), "", "rs1", "A", "=", "..", "é"]), max_size=6))
def test_spliced_pieces_of_a_valid_token_are_refused_or_are_the_token(pieces: list[str]) -> None:
    token = ".".join(pieces)
    assert _opens_or_refuses(token) == (token == VALID)


def _sign(envelope: Any) -> str:
    """A token for *envelope* under CODEC's key: what only a key holder could make."""
    kid = _parts(VALID)[2]
    signed = f"rs1.{_b64(json.dumps(envelope).encode())}.{kid}"
    return f"{signed}.{CODEC._mac(CODEC._ring[kid], signed)}"


_FIELDS = st.sampled_from(["b", "i", "n", "o", "r", "s"])


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(_FIELDS, inner),
        max_leaves=8,
    )
)
def test_a_signed_but_odd_envelope_is_still_refused_cleanly(envelope: Any) -> None:
    # Defence in depth: even a payload under a valid MAC is checked before use.
    assert not _opens_or_refuses(_sign(envelope))


@pytest.mark.parametrize(
    "change",
    [
        {"i": float("nan")},
        {"i": float("inf")},
        {"i": 10**400},
        {"i": 100},
        {"i": "100"},
        {"r": True},
        {"r": 0},
        {"r": 2.0},
        {"n": ""},
        {"n": "n" * 65},
        {"s": [1]},
        {"b": None},
        {"o": 100},
        {"o": "100"},
        {"o": float("nan")},
        {"o": 100.5},  # the first round after this one
        {"o": None},
    ],
)
def test_each_envelope_field_is_checked(change: dict[str, Any]) -> None:
    envelope = {"b": B.digest(), "i": 100.0, "n": "nonce", "o": 90.0, "r": 1, "s": {}}
    assert _opens_or_refuses(_sign(envelope))
    _refused("malformed", CODEC, _sign({**envelope, **change}))


def test_a_token_from_before_origins_still_opens() -> None:
    """A rolling upgrade: a state sealed without ``o`` counts its pending time from ``i``."""
    envelope = {"b": B.digest(), "i": 100.0, "n": "old-nonce", "r": 1, "s": {}}
    opened = CODEC.open(_sign(envelope), binding=B, now=150.0)
    assert (opened.issued_at, opened.origin) == (100.0, 100.0)


def test_the_refusal_maps_to_invalid_params_with_a_reason() -> None:
    error = InvalidRequestState("expired").to_protocol_error(7)
    assert (error.code, error.request_id, error.data) == (INVALID_PARAMS, 7, {"reason": "expired"})
    assert "again" in error.message


@pytest.mark.parametrize("now", [float("nan"), float("inf")])
def test_a_clock_that_is_not_a_time_is_a_caller_bug(now: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        CODEC.seal({}, binding=B, now=now, round=1)
    with pytest.raises(ValueError, match="finite"):
        CODEC.open(VALID, binding=B, now=now)
