"""Truncation keeps what matters and never loops; the cheap bound never under-counts."""

from __future__ import annotations

import pytest

from core import ChatMessage, InvalidRequest
from core._conversation import truncate
from core._tokens import byte_bound, count_prompt

SYSTEM = ChatMessage("system", "Be brief.")


@pytest.mark.parametrize("text", ["hello", "Milan " * 50, "naïve café ☕ 東京 " * 20, "a1!" * 100, ""])
def test_byte_bound_is_never_below_the_tokenizer_count(text):
    messages = [SYSTEM, ChatMessage("user", text or "x")]
    assert byte_bound(messages) >= count_prompt(messages)


def test_oldest_history_goes_first_and_system_plus_last_user_stay():
    history = [SYSTEM]
    for i in range(20):
        history += [ChatMessage("user", f"question {i} " * 10), ChatMessage("assistant", f"answer {i} " * 10)]
    history.append(ChatMessage("user", "the last question"))
    kept = truncate(history, 200)
    assert count_prompt(kept) <= 200
    assert kept[0] == SYSTEM and kept[-1] == history[-1]
    assert kept[1:-1] == tuple(history[len(history) - len(kept) + 1 : -1])  # a recent, contiguous tail


def test_prompt_that_cannot_fit_is_a_400_not_a_loop():
    with pytest.raises(InvalidRequest, match="limit is 50"):
        truncate([SYSTEM, ChatMessage("user", "word " * 200)], 50)
