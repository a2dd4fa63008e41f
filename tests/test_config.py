"""Configuration: a good file loads; every bad one fails at start with a message naming the key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from gateway.model.types import AgencyKind

OTHER_TOKEN_SHA256 = hashlib.sha256(b"another-long-token").hexdigest()
GOOD = f"""
[gateway]
port = 0
lease_seconds = 5

[store]
url = "sqlite+aiosqlite:///var/gw.db"

[[callers]]
id = "court-a"
token = "0123456789abcdef-token"
courts = ["110105"]

[[callers]]
id = "court-all"
token_sha256 = "{OTHER_TOKEN_SHA256}"
courts = ["*"]

[[agencies]]
id = "vrs-bj"
kind = "vehicle"
adapter = "vrs"
endpoint = "https://vrs.registry.example/"

[[agencies]]
id = "bank-1"
kind = "bank"
adapter = "cbas"
endpoint = "https://bank-1.example"
[agencies.limits]
concurrency = 4

[[agencies]]
id = "bank-2"
kind = "bank"
adapter = "cbas"
endpoint = "https://bank-2.example"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gateway.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_good_config_loads_with_defaults_and_fan_out(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.port == 0 and cfg.lease_seconds == 5
    assert cfg.store_url == f"sqlite+aiosqlite:///{(tmp_path / 'var/gw.db').resolve()}"
    assert [a.id for a in cfg.agencies_of_kind(AgencyKind.BANK)] == ["bank-1", "bank-2"]
    assert cfg.agency("vrs-bj").endpoint == "https://vrs.registry.example"  # trailing / dropped
    assert cfg.agency("bank-1").limits.concurrency == 4
    # Spec defaults per kind: 50/s banks and vehicles (CBAS, VRS), 20/s land registry (RERS).
    assert cfg.agency("bank-2").limits.rate_per_second == 50.0
    assert cfg.caller_by_token("0123456789abcdef-token").id == "court-a"  # type: ignore[union-attr]
    assert cfg.caller_by_token("another-long-token").id == "court-all"  # type: ignore[union-attr]
    assert cfg.caller_by_token("wrong") is None
    assert cfg.callers[1].may_act_for("440305") and not cfg.callers[0].may_act_for("440305")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('port = 0', 'port = "x"', "gateway.port"),
        ('port = 0', 'port = 70000', "gateway.port"),
        ('lease_seconds = 5', 'lease_seconds = -1', "gateway.lease_seconds"),
        ('lease_seconds = 5', 'lease_secs = 5', "gateway.lease_secs"),
        ('url = "sqlite+aiosqlite:///var/gw.db"', 'url = "mysql://x"', "store.url"),
        ('courts = ["110105"]', 'courts = ["11010"]', "callers[0].courts[0]"),
        ('token = "0123456789abcdef-token"', 'token = "short"', "callers[0].token"),
        ('kind = "vehicle"', 'kind = "boat"', "agencies[0].kind"),
        ('endpoint = "https://vrs.registry.example/"', 'endpoint = "vrs"', "agencies[0].endpoint"),
        ('id = "vrs-bj"', 'id = "bank-1"', "agencies[1].id"),
        ('id = "vrs-bj"', 'id = "vrs.bj"', "agencies[0].id"),  # the API's AgencyId has no '.'
        ("lease_seconds = 5", "default_deadline_seconds = 7776001",
         "gateway.default_deadline_seconds"),
        ("concurrency = 4", "concurrency = 0", "agencies[1].limits.concurrency"),
        ("concurrency = 4", "concurrency = true", "agencies[1].limits.concurrency"),
        ("concurrency = 4", "speed = 4", "agencies[1].limits.speed"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace(old, new, 1)))
    assert info.value.key == key
    assert key in str(info.value)


def test_agency_ids_match_the_apis_pattern(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD.replace('id = "vrs-bj"', 'id = "VRS_Beijing-1"', 1)))
    assert cfg.agencies[0].id == "VRS_Beijing-1"


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    text = GOOD.replace('adapter = "vrs"', 'adapter = "vrs"\nsigning_key = "nope.jwk.json"', 1)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.key == "agencies[0].signing_key" and "nope.jwk.json" in str(info.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[gateway\n"))


def test_caller_needs_exactly_one_token_form(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"callers": [{"id": "x", "courts": ["*"]}]}, tmp_path)
    assert info.value.key == "callers[0].token"
