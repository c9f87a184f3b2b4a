"""Tenant API keys: only their SHA-256 hashes are configured (``Auth:Keys:<tenant>`` =
``sha256:<64 hex>[;sha256:<64 hex>]``, several during a rotation) and held in memory.

A presented key is hashed and looked up by its digest, then confirmed with ``hmac.compare_digest``.
Timing can at most reveal something about the SHA-256 digest of the guess, never about a stored
key: the comparison is constant-time where it matters, and the lookup stays O(1) however many
tenants there are (a linear scan would cost every request ~100 ns per configured key).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

PREFIX = "sha256:"


def parse_hashes(value: str) -> tuple[bytes, ...]:
    """``sha256:<hex>[;sha256:<hex>]`` -> digests; ValueError (saying nothing of the value) if malformed."""
    digests = []
    for part in (p.strip() for p in value.split(";")):
        if not part:
            continue
        if not part.lower().startswith(PREFIX) or len(part) != len(PREFIX) + 64:
            raise ValueError("must be sha256:<64 hex digits>[;sha256:<64 hex digits>]")
        digests.append(bytes.fromhex(part[len(PREFIX):]))
    if not digests:
        raise ValueError("must hold at least one sha256:<64 hex digits>")
    return tuple(digests)


def digest_of(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """Which tenant a presented key belongs to (``None``: no tenant's)."""

    def __init__(self, hashes: Mapping[str, Iterable[bytes]]) -> None:
        self._by_digest: dict[bytes, tuple[str, bytes]] = {}
        for tenant, digests in hashes.items():
            for digest in digests:
                other = self._by_digest.get(digest)
                if other is not None and other[0] != tenant:
                    raise ValueError(f"the same key hash is configured for tenants {other[0]} and {tenant}")
                self._by_digest[digest] = (tenant, digest)

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(t for t, _ in self._by_digest.values())

    def tenant(self, key: str) -> str | None:
        digest = digest_of(key.strip())
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[1], digest):
            return None
        return found[0]
