"""``python -m clients.cli keygen``: the key it prints is accepted by a gateway given the setting it
prints (environment form, through the real settings loader), and a rotation keeps both keys valid."""

from __future__ import annotations

import json

import pytest
from secret_scan import register_secret
from typer.testing import CliRunner

from clients.cli import app
from core import Credentials, Unauthenticated, build_gateway, load_settings


def keygen(*args: str) -> dict[str, str]:
    result = CliRunner().invoke(app, ["keygen", *args, "--json"])
    assert result.exit_code == 0, result.output
    made: dict[str, str] = json.loads(result.stdout)
    register_secret(made["key"], "a keygen key")
    register_secret(made["hash"].removeprefix("sha256:"), "a keygen hash")
    return made


def environ(setting: str, **extra: str) -> dict[str, str]:
    name, _, value = setting.partition("=")
    return {name: value, **extra}


async def test_the_printed_setting_makes_the_gateway_accept_the_printed_key() -> None:
    made = keygen("Contoso")
    assert made["env"].startswith("Auth__Keys__contoso=sha256:") and made["setting"] == "Auth:Keys:contoso"
    assert made["json"] == {"Auth": {"Keys": {"contoso": made["hash"]}}}
    gateway = build_gateway(load_settings(environ=environ(made["env"], Auth__Mode="keys")))
    assert await gateway.authenticate(Credentials(api_key=made["key"])) == "contoso"


async def test_rotation_keeps_the_old_and_the_new_key_until_the_old_hash_is_removed() -> None:
    old = keygen("acme")
    new = keygen("acme", "--rotate-from", old["value"])
    assert new["value"] == f"{old['hash']};{new['hash']}"
    gateway = build_gateway(load_settings(environ=environ(new["env"], Auth__Mode="keys")))
    for made in (old, new):
        assert await gateway.authenticate(Credentials(authorization=f"Bearer {made['key']}")) == "acme"
    after = build_gateway(load_settings(environ=environ(keygen("acme")["env"], Auth__Mode="keys")))
    with pytest.raises(Unauthenticated):
        await after.authenticate(Credentials(api_key=old["key"]))


def test_metrics_key_setting() -> None:
    made = keygen("--metrics")
    settings = load_settings(environ=environ(made["env"]))
    build_gateway(settings).authorize_metrics(f"Bearer {made['key']}")


@pytest.mark.parametrize("args", [["\u212aontoso"], [".."], [], ["acme", "--metrics"], ["acme", "--rotate-from", "x"]])
def test_bad_arguments_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["keygen", *args])
    assert result.exit_code == 2 and "usage error" in result.output
