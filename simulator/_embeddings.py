"""``POST /openai/deployments/{deployment}/embeddings``: deterministic unit vectors and their usage.

``input`` is a string, an array of strings, an array of token ids or an array of such arrays;
``dimensions`` (default 1536) and ``encoding_format`` (``float`` or ``base64``: little-endian
float32, what the openai SDK asks for) are honoured. Prompt tokens are tiktoken's count of the
text (a token id counts as one).
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from simulator._request import InvalidRequest
from simulator._text import TokenCounter

DEFAULT_DIMENSIONS = 1536
MAX_INPUTS = 2048


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    inputs: tuple[str | tuple[int, ...], ...]
    dimensions: int
    base64: bool


def parse_embeddings_request(raw: bytes) -> EmbeddingsRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    value = body.get("input")
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(i, int) for i in value)):
        value = [value]
    if not isinstance(value, list) or not value or len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' must be a string or a non-empty array of at most {MAX_INPUTS} items.",
                             "input")
    inputs: list[str | tuple[int, ...]] = []
    for item in value:
        if isinstance(item, str) and item:
            inputs.append(item)
        elif isinstance(item, list) and item and all(isinstance(i, int) for i in item):
            inputs.append(tuple(item))
        else:
            raise InvalidRequest("each 'input' item must be a non-empty string or array of token ids.", "input")
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= 3072:
        raise InvalidRequest("'dimensions' must be an integer between 1 and 3072.", "dimensions")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be float or base64.", "encoding_format")
    return EmbeddingsRequest(tuple(inputs), dimensions, fmt == "base64")


def prompt_tokens(counter: TokenCounter, request: EmbeddingsRequest) -> int:
    return sum(len(i) if isinstance(i, tuple) else counter.count(i) for i in request.inputs)


def vector(item: str | tuple[int, ...], dimensions: int) -> list[float]:
    """A unit vector determined by the input alone (same text, same vector)."""
    rng = random.Random(hashlib.blake2b(orjson.dumps(item), digest_size=16).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def response_body(request: EmbeddingsRequest, model: str, tokens: int) -> dict[str, Any]:
    data = []
    for index, item in enumerate(request.inputs):
        values = vector(item, request.dimensions)
        embedding: Any = (base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
                          if request.base64 else values)
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
