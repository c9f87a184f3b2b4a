"""Azure OpenAI instances: the ports the gateway calls; adapters: ``_azure_openai`` (openai SDK) and
``_relay`` (aiohttp, byte for byte)."""

from ._port import (
    Operation,
    Relay,
    RelayReply,
    RelayStream,
    StreamEvent,
    TokenProvider,
    Upstream,
    UpstreamReply,
    UpstreamStream,
)

__all__ = [
    "Operation",
    "Relay",
    "RelayReply",
    "RelayStream",
    "StreamEvent",
    "TokenProvider",
    "Upstream",
    "UpstreamReply",
    "UpstreamStream",
]
