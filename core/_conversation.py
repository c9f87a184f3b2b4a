"""Conversations: validating what callers send, the system prompt, and history truncation."""

from __future__ import annotations

from collections.abc import Sequence

from ._errors import InvalidRequest
from ._tokens import byte_bound, count_message, count_prompt
from ._values import ChatMessage, Role

ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})
MAX_CONTENT_CHARS = 200_000

DEFAULT_CONTEXT_TOKENS = 4096  # the C# sample's default when ChatCompletionsOptions:MaxTokens is unset


def parse_conversation(raw: object, *, max_messages: int = 256) -> tuple[ChatMessage, ...]:
    """Validate a decoded JSON body: a non-empty array of ``{"role", "content"}`` objects."""
    if not isinstance(raw, list):
        kind = type(raw).__name__ if raw is not None else "null"
        raise InvalidRequest(
            f"the body must be a JSON array of messages like "
            f'[{{"role": "user", "content": "Hello"}}], not a JSON {_json_kind(kind)}'
        )
    if not raw:
        raise InvalidRequest("the conversation is empty; send at least one user message")
    if len(raw) > max_messages:
        raise InvalidRequest(f"the conversation has {len(raw)} messages; the limit is {max_messages}")
    messages = tuple(_parse_message(i, item) for i, item in enumerate(raw))
    if not any(m.role == "user" for m in messages):
        raise InvalidRequest("the conversation has no user message; add one with role 'user'")
    return messages


def _parse_message(index: int, item: object) -> ChatMessage:
    if isinstance(item, dict):  # the usual, valid message: checked without building any error text
        role, content = item.get("role"), item.get("content")
        if isinstance(role, str) and isinstance(content, str) and content and not content.isspace() \
                and len(content) <= MAX_CONTENT_CHARS:
            role = role.strip().lower()
            if role in ROLES:
                return ChatMessage(role, content)  # type: ignore[arg-type]  # narrowed by the ROLES check
    return _invalid_message(index, item)


def _invalid_message(index: int, item: object) -> ChatMessage:
    """What is wrong with ``item`` (raised), in the order a person would fix it."""
    where = f"message {index}"
    if not isinstance(item, dict):
        raise InvalidRequest(f'{where} must be an object with "role" and "content"')
    role = item.get("role")
    content = item.get("content")
    if role is None:
        raise InvalidRequest(f'{where} has no "role"; use one of system, user, assistant')
    if not isinstance(role, str):
        raise InvalidRequest(f'{where}: "role" must be a string (system, user or assistant)')
    role = role.strip().lower()
    if role not in ROLES:
        raise InvalidRequest(f"{where}: unknown role {role[:32]!r}; use system, user or assistant")
    if content is None:
        raise InvalidRequest(f'{where} has no "content"')
    if not isinstance(content, str):
        raise InvalidRequest(f'{where}: "content" must be a string')
    if not content.strip():
        raise InvalidRequest(f'{where}: "content" is empty')
    if len(content) > MAX_CONTENT_CHARS:
        raise InvalidRequest(f"{where}: content is longer than {MAX_CONTENT_CHARS} characters")
    checked_role: Role = role  # type: ignore[assignment]  # narrowed by the ROLES check
    return ChatMessage(checked_role, content)


def _json_kind(python_type: str) -> str:
    return {"dict": "object", "str": "string", "int": "number", "float": "number",
            "bool": "boolean"}.get(python_type, python_type)


def with_system_prompt(messages: Sequence[ChatMessage], prompt: str) -> tuple[ChatMessage, ...]:
    """Prepend the configured system prompt when the caller sent no system message."""
    if not prompt or any(m.role == "system" for m in messages):
        return tuple(messages)
    return (ChatMessage("system", prompt), *messages)


def truncate(messages: Sequence[ChatMessage], budget: int) -> tuple[ChatMessage, ...]:
    """Drop the oldest history until the prompt fits ``budget`` tokens.

    System messages and the last user message are always kept; when even those do not fit,
    the caller gets a 400 that says by how much (the C# sample loops forever there).
    """
    kept = list(messages)
    if byte_bound(kept) <= budget or count_prompt(kept) <= budget:
        return tuple(kept)
    last_user = max(i for i, m in enumerate(kept) if m.role == "user")
    pinned = {i for i, m in enumerate(kept) if m.role == "system"} | {last_user}
    sizes = [count_message(m) for m in kept]
    total = sum(sizes) + 3
    keep = [True] * len(kept)
    for i in range(len(kept)):
        if total <= budget:
            break
        if i not in pinned:
            keep[i] = False
            total -= sizes[i]
    if total > budget:
        raise InvalidRequest(
            f"the prompt needs {total} tokens even with older history dropped; the limit is {budget}"
            " (ChatCompletionsOptions:MaxTokens minus MaxResponseTokens); shorten the last message"
        )
    return tuple(m for m, k in zip(kept, keep, strict=True) if k)
