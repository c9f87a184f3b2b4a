"""A streamed completion as the hosts read it: text deltas, billed once however it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from ._errors import GatewayError
from ._tokens import count_prompt, count_text
from ._values import Budget, ChatMessage, Completion, Usage
from .telemetry import Attempt
from .upstream import UpstreamStream


class ChatStream:
    """Text deltas of one streamed completion. Always ``aclose()`` it; tokens are counted once."""

    def __init__(
        self,
        instance: str,
        prompt: tuple[ChatMessage, ...],
        upstream: UpstreamStream,
        on_finish: Callable[[Completion], None],
        span: Attempt | None = None,
    ) -> None:
        self.instance = instance
        self._span = span
        self._model = ""
        self._finish_reasons: list[str] = []
        self.completion: Completion | None = None
        self.budget: Budget | None = None  # the tenant's remaining budget, when it has limits
        self._on_finish = on_finish
        self._prompt = prompt
        self._upstream = upstream
        self._parts: list[str] = []
        self._usage: Usage | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            async for event in self._upstream:
                if event.usage is not None:
                    self._usage = event.usage
                if event.finish_reason:
                    self._finish_reasons.append(event.finish_reason)
                if event.text:
                    self._model = event.model or self._model
                    self._parts.append(event.text)
                    yield event.text
        except GatewayError as exc:
            if self._span is not None:
                self._span.fail(exc)  # the attempt's span says how the stream broke
            raise
        self._finish()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._upstream.aclose()
        finally:
            self._finish()

    def _finish(self) -> None:
        if self.completion is not None:
            return
        text = "".join(self._parts)
        usage = self._usage or Usage(count_prompt(self._prompt), count_text(text))
        self.completion = Completion(text, self.instance, usage, self._usage is not None, self.budget)
        self._on_finish(self.completion)
        if self._span is not None:
            self._span.finish(self.completion, self._model, self._finish_reasons)
