"""``keygen``: a new random tenant API key and the exact setting that makes the gateway accept it.

The gateway stores only ``sha256:<hex>`` of a key (``Auth:Keys:<tenant>``); the key itself is
printed once, here, for the tenant. ``--rotate-from`` appends the new hash to the current value
(``old;new``) so both keys work until the old one is removed. ``--metrics`` makes a key for
``/metrics`` (``Auth:MetricsKey``) instead, ``--admin`` one that reads every tenant's usage
(``Auth:AdminKeys``, ``GET /admin/usage``).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Annotated

import typer

from clients.cli._options import out_console, usage_error

TENANT = re.compile(r"^[a-z0-9._-]{1,64}$")
HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def keygen(
    tenant: Annotated[str | None, typer.Argument(help="The tenant the key authenticates (omit with --metrics).",
                                                 show_default=False)] = None,
    metrics: Annotated[bool, typer.Option("--metrics", help="A key for /metrics (Auth:MetricsKey).")] = False,
    admin: Annotated[bool, typer.Option(
        "--admin", help="A key that reads every tenant's usage (Auth:AdminKeys).")] = False,
    rotate_from: Annotated[str | None, typer.Option(
        "--rotate-from", help="The setting's current value (sha256:...); the new hash is appended so both keys "
                              "work during the rotation.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (key, hash, settings).")] = False,
) -> None:
    """Print a new random API key and the setting line (environment, Key Vault, JSON) for the gateway."""
    if (metrics or admin) == bool(tenant) or (metrics and admin):
        usage_error("give a TENANT, or --metrics for the /metrics key, or --admin for a usage-reading key")
    name = (tenant or "").strip()
    if tenant is not None and (not name.isascii() or not TENANT.match(name.lower()) or not name.strip(".")):
        usage_error("the tenant may contain only ASCII letters, digits, '.', '_' and '-' (not only dots; <= 64)")
    name = name.lower()
    previous = [h.strip().lower() for h in (rotate_from or "").split(";") if h.strip()]
    if not all(HASH.match(h) for h in previous):
        usage_error("--rotate-from must be the current setting value: sha256:<64 hex>[;sha256:<64 hex>]")
    key = "gwk_" + secrets.token_urlsafe(32)  # 256 bits; no '.' so that Auth:Mode=jwt,keys reads it as a key
    digest = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    value = ";".join([*previous[-1:], digest])  # keep at most the latest old hash: two keys during a rotation
    path = ["Auth", "MetricsKey"] if metrics else ["Auth", "AdminKeys"] if admin else ["Auth", "Keys", name]
    env = f"{'__'.join(path)}={value}"
    vault = f"{'--'.join(path)}"
    tree: dict[str, object] = {path[-1]: value}
    for part in reversed(path[:-1]):
        tree = {part: tree}
    if as_json:
        print(json.dumps({"key": key, "hash": digest, "setting": ":".join(path), "value": value, "env": env,
                          "key_vault_secret": vault, "json": tree}))
        return
    out = out_console()
    who = ("/metrics (send it as 'Authorization: Bearer <key>')" if metrics
           else "every tenant's usage (GET /admin/usage)" if admin else f"tenant {name}")
    out.print(f"API key for {who} — shown once, hand it over through a secret store:", markup=False)
    out.print(f"  {key}", markup=False)
    out.print("Gateway setting (only the hash is stored):", markup=False)
    out.print(f"  environment / app setting:  {env}", markup=False)
    out.print(f"  Key Vault secret:           {vault} = {value}", markup=False)
    out.print(f"  JSON (appsettings):         {json.dumps(tree)}", markup=False)
