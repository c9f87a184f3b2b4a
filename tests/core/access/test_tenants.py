"""Tenant resolution in the C# sample's order (query, X-Tenant, JWT claim) with normalisation."""

from __future__ import annotations

import jwt
import pytest

from core import InvalidRequest, Unauthenticated, resolve_tenant


def _bearer(claims: dict[str, object]) -> str:
    return "Bearer " + jwt.encode(claims, "k" * 32, algorithm="HS256")


def test_query_beats_header_beats_token() -> None:
    token = _bearer({"tenant": "fromtoken"})
    assert resolve_tenant(query="q", header="h", authorization=token) == "q"
    assert resolve_tenant(query=None, header="h", authorization=token) == "h"
    assert resolve_tenant(query=None, header=None, authorization=token) == "fromtoken"


def test_names_are_trimmed_and_lower_cased() -> None:
    assert resolve_tenant(query="  Contoso ", header=None, authorization=None) == "contoso"


@pytest.mark.parametrize("raw", ["", "   ", "a b", "x" * 65, "semi;colon", "slash/"])
def test_bad_names_are_a_400_that_says_what_is_allowed(raw: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        resolve_tenant(query=raw, header=None, authorization=None)
    assert "tenant" in caught.value.detail


def test_no_tenant_at_all_says_how_to_pass_one() -> None:
    with pytest.raises(InvalidRequest, match=r"\?tenant=<name>"):
        resolve_tenant(query=None, header=None, authorization=None)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [("Basic abc", "Bearer"), ("Bearer not-a-jwt", "well-formed"), (_bearer({"sub": "x"}), "'tenant' claim")],
)
def test_unusable_bearer_tokens_are_401(authorization: str, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        resolve_tenant(query=None, header=None, authorization=authorization)
