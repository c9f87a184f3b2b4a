"""The streaming decoders: whatever way the network cuts the bytes, the user sees the same text."""

from __future__ import annotations

import json

import pytest

from clients.cli._wire import JsonArrayDecoder, SseDecoder, WireError, delta_text

PIECES = ["Hel", "lo, ", 'wor"ld" ', "\\ü🙂", "\n", "end"]


def _cuts(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_json_array_pieces_survive_any_chunking(size: int) -> None:
    wire = json.dumps(PIECES)
    decoder = JsonArrayDecoder()
    got = [item for chunk in _cuts(wire, size) for item in decoder.feed(chunk)]
    assert got == PIECES
    assert decoder.closed


def test_json_array_cut_off_is_not_closed() -> None:
    decoder = JsonArrayDecoder()
    assert decoder.feed('["Hel", "lo') == ["Hel"]
    assert not decoder.closed


def test_json_array_rejects_non_strings() -> None:
    with pytest.raises(WireError):
        JsonArrayDecoder().feed('[{"a": 1}]')


@pytest.mark.parametrize("size", [1, 5, 1000])
def test_sse_events_survive_any_chunking(size: int) -> None:
    wire = "".join(f"data: {json.dumps({'delta': p})}\r\n\r\n" for p in PIECES)
    wire += ': keep-alive\n\nevent: usage\ndata: {"prompt_tokens": 3}\n\ndata: [DONE]\n\n'
    decoder = SseDecoder()
    events = [e for chunk in _cuts(wire, size) for e in decoder.feed(chunk)]
    assert [delta_text(e.data) for e in events[: len(PIECES)]] == PIECES
    assert (events[-2].event, events[-2].data) == ("usage", '{"prompt_tokens": 3}')
    assert events[-1].data == "[DONE]"


def test_sse_delta_accepts_a_bare_json_string() -> None:
    assert delta_text('"Hi"') == "Hi"
    with pytest.raises(WireError):
        delta_text('{"other": 1}')
