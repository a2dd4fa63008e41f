"""The RERS adapter as a plugin: registered entry point, capabilities, its unchanged contract
copy, start-up checks of keys, certificates and options (ConfigError naming the key), and the
spec's client timeout (RERS-21) whatever the configured limits say."""

from __future__ import annotations

import datetime as dt
import filecmp
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.adapters.base import Adapter
from gateway.adapters.registry import adapter_class
from gateway.adapters.rers import RersAdapter, codec
from gateway.adapters.rers.adapter import SPEC_TIMEOUT
from gateway.errors import ConfigError, RejectedError
from gateway.model.types import Action, AgencyKind, ControlCommand
from tests.adapters.rers import (
    CONTRACT_ORIGINALS,
    COURT_CERT,
    COURT_SHA256,
    KEYS,
    REGISTRY_CERT,
    REGISTRY_SHA256,
    agency_config,
    call,
    context,
    inquiry,
    rid,
)

URL = "https://rers.example/rers/v1"


def test_registered_under_its_entry_point_with_its_capabilities() -> None:
    assert adapter_class("rers") is RersAdapter
    adapter = RersAdapter(agency_config(URL))
    assert isinstance(adapter, Adapter)
    assert RersAdapter.name == "rers"
    caps = RersAdapter.capabilities
    assert caps.kind is AgencyKind.REAL_ESTATE and caps.inquiry
    assert caps.actions == {Action.SEAL, Action.PRE_SEAL, Action.RELEASE_SEAL, Action.RENEW_SEAL}
    # Certificates are loaded once, at construction; named by the SHA-256 of their DER.
    assert adapter.cert_sha256 == COURT_SHA256
    assert adapter.registry_cert_sha256 == REGISTRY_SHA256


def test_the_contract_is_an_unchanged_copy() -> None:
    here = Path(codec.__file__).parent
    for name in (codec.WSDL_FILE, codec.XSD_FILE):
        assert filecmp.cmp(here / name, CONTRACT_ORIGINALS / name, shallow=False), name


def test_the_spec_timeouts_replace_the_configured_ones() -> None:
    """RERS §1: 15 s total, 5 s to connect, whatever limits say; the rest of limits stays."""
    adapter = RersAdapter(agency_config(URL, total_timeout=120.0, connect_timeout=1.0,
                                        concurrency=3))
    limits = adapter._soap.rest._limits
    assert (limits.total_timeout, limits.connect_timeout) == (15.0, 5.0) == (
        SPEC_TIMEOUT.total, SPEC_TIMEOUT.connect)
    assert limits.concurrency == 3


@pytest.mark.parametrize("key", ["signing_key", "signing_cert", "agency_key"])
def test_missing_key_or_certificate_is_a_config_error_naming_it(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        RersAdapter(replace(agency_config(URL), **{key: None}))
    assert info.value.key == key


@pytest.mark.parametrize("key", ["signing_key", "signing_cert", "agency_key"])
def test_unreadable_key_or_certificate_is_a_config_error_naming_it(key: str,
                                                                    tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN NONSENSE-----\nAAAA\n-----END NONSENSE-----\n")
    for path in (bad, tmp_path / "missing.pem", KEYS / "vrs-court.jwk.json"):
        with pytest.raises(ConfigError) as info:
            RersAdapter(replace(agency_config(URL), **{key: path}))
        assert info.value.key == key


def test_an_rsa_key_cannot_sign_rers() -> None:
    cfg = replace(agency_config(URL), signing_key=KEYS / "cbas-court.key.pem",
                  signing_cert=KEYS / "cbas-court.cert.pem")
    with pytest.raises(ConfigError) as info:
        RersAdapter(cfg)
    assert info.value.key == "signing_key"
    assert "P-256" in str(info.value)


def test_an_rsa_registry_certificate_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        RersAdapter(replace(agency_config(URL), agency_key=KEYS / "cbas-bank.cert.pem"))
    assert info.value.key == "agency_key"


def test_key_must_belong_to_our_certificate() -> None:
    cfg = replace(agency_config(URL), signing_cert=REGISTRY_CERT, agency_key=COURT_CERT)
    with pytest.raises(ConfigError) as info:
        RersAdapter(cfg)
    assert info.value.key == "signing_key"


def test_our_own_certificate_as_agency_key_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        RersAdapter(replace(agency_config(URL), agency_key=COURT_CERT))
    assert info.value.key == "agency_key"


def test_an_expired_certificate_is_refused_at_start_up() -> None:
    later = dt.datetime(2036, 1, 1, tzinfo=dt.UTC)  # the test certificates end in 2034
    with pytest.raises(ConfigError) as info:
        RersAdapter(agency_config(URL), now=lambda: later)
    assert info.value.key == "signing_cert"
    assert "expired" in str(info.value)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"validate_request": True}, "options.validate_request"),
        ({"validate_requests": 1}, "options.validate_requests"),
        ({"poll_deadline_seconds": 5}, "options.poll_deadline_seconds"),  # CBAS's, not ours
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        RersAdapter(agency_config(URL, options=options))
    assert info.value.key == key


async def test_commands_the_registry_could_only_refuse_are_rejected_before_sending() -> None:
    adapter = RersAdapter(agency_config("http://127.0.0.1:9/rers/v1"))  # nothing listens
    try:
        bad_id = replace(inquiry(), request_id="NOT-A-UUID")
        no_unit = ControlCommand(rid(2), context(2), Action.SEAL, subject=inquiry().subject,
                                 days=30)
        no_ruling = ControlCommand(rid(3), context(3, ruling=False), Action.RELEASE_SEAL,
                                   seal_id="SEAL-1")
        freeze = ControlCommand(rid(4), context(4), Action.FREEZE)
        for command, code in [(bad_id, "invalid-request"), (no_unit, "invalid-command"),
                              (no_ruling, "invalid-command"), (freeze, "invalid-command")]:
            with pytest.raises(RejectedError) as info:
                await adapter.execute(call(command))
            assert info.value.code == code, command
    finally:
        await adapter.aclose()


async def test_a_certificate_expiring_after_start_up_stops_sending() -> None:
    """Our certificate runs out while the gateway runs: nothing the registry would refuse
    (CERTIFICATE_UNTRUSTED) is sent; the command is rejected for an operator to act."""
    moment = [dt.datetime(2034, 12, 31, 23, 0, tzinfo=dt.UTC)]  # the certificates' last day
    adapter = RersAdapter(agency_config("http://127.0.0.1:9/rers/v1"), now=lambda: moment[0])
    moment[0] += dt.timedelta(days=2)
    try:
        with pytest.raises(RejectedError) as info:
            await adapter.execute(call(inquiry()))
        assert info.value.code == "signing-certificate"
    finally:
        await adapter.aclose()


def test_the_rate_limit_is_visible_to_the_operators_metric() -> None:
    """gateway_agency_throttled_seconds reads ``adapter.transport.throttle``: the land
    registry adapter exposes the token bucket its requests wait on."""
    adapter = RersAdapter(agency_config(URL, rate_per_second=3))
    assert adapter.transport.throttle is not None
    assert adapter.transport.throttle.rate == 3
    assert adapter.transport.throttle.waited == 0.0
