"""Azure OpenAI instances: the port the gateway calls; the openai-SDK adapter lives in ``_azure_openai``."""

from ._port import StreamEvent, TokenProvider, Upstream, UpstreamReply, UpstreamStream

__all__ = ["StreamEvent", "TokenProvider", "Upstream", "UpstreamReply", "UpstreamStream"]
