"""Synthetic data and fixtures for tests and demos, public so integrators can use what we use.

Everything is generated from a seed: valid identifiers (with their check characters), case
numbers that match the court, document references with real digests, and mock-agency fixtures
in the agencies' published format (README §10) where a share of the subjects hold assets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import random
import socket
import string
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.model.rules import check_character_resident, check_character_uscc, court_designator

DEMO_COURT = {"code": "110105", "name": "示例区人民法院"}
DEMO_OFFICER = {"name": "王明", "credentialNo": "J110105000123"}
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"


@dataclass(frozen=True, slots=True)
class SyntheticSubject:
    id_type: str
    id_number: str
    name: str

    def wire(self) -> dict[str, str]:
        return {"idType": self.id_type, "idNumber": self.id_number, "name": self.name}


def resident_id(rng: random.Random) -> str:
    region = rng.choice(["110105", "110108", "310115", "440305", "320102"])
    birth = f"{rng.randint(1950, 2004)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    first17 = f"{region}{birth}{rng.randint(0, 999):03d}"
    return first17 + check_character_resident(first17)


def uscc(rng: random.Random) -> str:
    body = "91" + "110105" + "".join(rng.choice(_USCC_ALPHABET) for _ in range(9))
    return body + check_character_uscc(body)


def subjects(n: int, *, seed: int = 1) -> list[SyntheticSubject]:
    """``n`` distinct subjects, about a fifth of them companies."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[SyntheticSubject] = []
    while len(out) < n:
        if rng.random() < 0.2:
            s = SyntheticSubject("USCC", uscc(rng),
                                 f"示例{rng.choice(_GIVEN)}{rng.choice(_GIVEN)}有限公司")
        else:
            s = SyntheticSubject("RESIDENT_ID", resident_id(rng),
                                 rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN))
        if s.id_number not in seen:
            seen.add(s.id_number)
            out.append(s)
    return out


def document(kind: str, case_seq: int) -> dict[str, str]:
    """A document reference whose digest is that of real (tiny, synthetic) PDF bytes."""
    pdf = f"%PDF-1.4\n% SYNTHETIC {kind} case {case_seq}\n%%EOF\n".encode()
    return {"documentId": f"{kind.upper()}-2026-{case_seq:06d}",
            "sha256": hashlib.sha256(pdf).hexdigest()}


def case_no(court_code: str, seq: int, year: int = 2026) -> str:
    return f"({year}){court_designator(court_code)}执{seq}号"


def inquiry_items(people: list[SyntheticSubject], *, court_code: str = DEMO_COURT["code"]
                  ) -> Iterator[dict[str, Any]]:
    """Batch items in the API's wire form, one case per subject."""
    for i, s in enumerate(people, 1):
        yield {"ref": f"subject-{i}", "caseNo": case_no(court_code, i),
               "subject": s.wire(), "documents": {"assistanceNotice": document("notice", i)}}


def vin(rng: random.Random) -> str:
    return "L" + "".join(rng.choice(_VIN_ALPHABET) for _ in range(16))


def plate(rng: random.Random) -> str:
    return "京" + rng.choice(_PLATE_LETTERS) + "".join(
        rng.choice(string.digits + _PLATE_LETTERS) for _ in range(5))


def vrs_fixture(
    people: list[SyntheticSubject],
    callers: list[Mapping[str, Any]],
    *,
    seed: int = 1,
    hit_ratio: float = 0.3,
    pending_polls: int = 1,
    retry_after_seconds: int = 1,
) -> dict[str, Any]:
    """A VRS fixture (spec §8) where about ``hit_ratio`` of the subjects own one or two vehicles,
    some of them already seized by another court or mortgaged."""
    rng = random.Random(seed)
    vehicles: list[dict[str, Any]] = []
    for s in people:
        if rng.random() >= hit_ratio:
            continue
        for _ in range(1 if rng.random() < 0.7 else 2):
            v: dict[str, Any] = {
                "vin": vin(rng), "plate": plate(rng), "make": "示例汽车",
                "model": rng.choice(["EX1", "EX3", "EX5", "EX7"]),
                "registeredOn": f"{rng.randint(2012, 2025)}-{rng.randint(1, 12):02d}-"
                                f"{rng.randint(1, 28):02d}",
                "status": "NORMAL", "owner": s.id_number, "mortgages": [], "seizures": [],
            }
            if rng.random() < 0.2:
                v["mortgages"].append({"rank": 1, "mortgagee": "示例银行示例支行",
                                       "effectiveOn": v["registeredOn"]})
            if rng.random() < 0.1:
                v["seizures"].append({
                    "seizureId": f"SZ-FX-{len(vehicles):06d}",
                    "authority": {"name": "示例新区人民法院", "courtCode": "310115"},
                    "caseNo": "(2025)沪0115执567号", "status": "ACTIVE",
                    "effectiveOn": "today-30", "seizedUntil": "today+699"})
            vehicles.append(v)
    return {
        "fixtureVersion": 1,
        "agency": "VRS",
        "agencyName": "示例市车辆管理所",
        "callers": list(callers),
        "subjects": [s.wire() for s in people],
        "vehicles": vehicles,
        "behaviour": {"pendingPolls": pending_polls, "retryAfterSeconds": retry_after_seconds,
                      "inject": []},
    }


@dataclass
class RunningMock:
    """A mock agency serving on loopback: its base URL and its in-process state."""

    url: str
    app: Any  # aiohttp web.Application
    state: Any  # e.g. mock_agencies.vrs.server.VrsMock


@contextlib.asynccontextmanager
async def serve_mock(
    make_app: Callable[[str], Any],
    state_key: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    middlewares: tuple[Any, ...] = (),
) -> AsyncIterator[RunningMock]:
    """Serve ``make_app(public_url)`` on a loopback port for the duration of the block.

    ``middlewares`` (aiohttp middlewares) run before the mock's own handling: tests use one to
    record exactly what arrived on the wire.
    """
    from aiohttp import web

    sock = socket.socket()
    try:
        sock.bind((host, port))
        url = f"http://{host}:{sock.getsockname()[1]}"
        app = make_app(url)
        app.middlewares[:0] = list(middlewares)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
    except BaseException:
        sock.close()
        raise
    try:
        yield RunningMock(url=url, app=app, state=app[state_key])
    finally:
        await runner.cleanup()


def mock_vrs(fixture: Mapping[str, Any] | str, signing_key: Any, *,
             middlewares: tuple[Any, ...] = (), **kwargs: Any
             ) -> contextlib.AbstractAsyncContextManager[RunningMock]:
    """The mock vehicle registry on loopback (``state`` is its VrsMock)."""
    from mock_agencies.vrs.server import VRS_KEY, create_app

    return serve_mock(lambda url: create_app(fixture, signing_key, url, **kwargs), VRS_KEY,
                      middlewares=middlewares)


def mock_cbas(fixture: Mapping[str, Any] | str, signing_key: Any, certificate: Any, *,
              middlewares: tuple[Any, ...] = (), **kwargs: Any
              ) -> contextlib.AbstractAsyncContextManager[RunningMock]:
    """A mock bank on loopback (``state`` is its CbasMock; the SOAP endpoint is ``url``)."""
    from mock_agencies.cbas.server import CBAS_KEY, create_app

    return serve_mock(lambda _url: create_app(fixture, signing_key, certificate, **kwargs),
                      CBAS_KEY, middlewares=middlewares)


def mock_rers(fixture: Mapping[str, Any] | str, signing_key: Any, certificate: Any, *,
              middlewares: tuple[Any, ...] = (), **kwargs: Any
              ) -> contextlib.AbstractAsyncContextManager[RunningMock]:
    """The mock land registry on loopback (``state`` is its RersMock; SOAP endpoint ``url``)."""
    from mock_agencies.rers.server import RERS_KEY, create_app

    return serve_mock(lambda _url: create_app(fixture, signing_key, certificate, **kwargs),
                      RERS_KEY, middlewares=middlewares)


# --- banks (CBAS) ------------------------------------------------------------------------------


def generate_certificate(key_path: Path, cert_path: Path, common_name: str, *,
                         kind: str = "rsa", days: int = 365) -> str:
    """A self-signed signing certificate (digitalSignature) and its key, as PEM files, for demos
    and tests only; returns the certificate's SHA-256 (the agencies' caller-list identifier).
    ``kind`` is "rsa" (RSA-2048, CBAS) or "ec" (P-256, RERS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    key: Any = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
                else ec.generate_private_key(ec.SECP256R1()))
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agency-gateway demo (TEST)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    der = cert.public_bytes(serialization.Encoding.DER)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return hashlib.sha256(der).hexdigest()


def account_no(rng: random.Random) -> str:
    return "6222" + "".join(rng.choice(string.digits) for _ in range(15))


def cbas_fixture(
    people: list[SyntheticSubject],
    caller_certificates: list[str],
    *,
    bank_name: str = "示例银行",
    seed: int = 1,
    hit_ratio: float = 0.3,
    pending_polls: int = 1,
    retry_after_seconds: int = 1,
) -> dict[str, Any]:
    """A CBAS fixture (bank ICD §7) where about ``hit_ratio`` of the subjects hold accounts with
    balances in whole yuan and fen (money as strings, never floats), some with another court's
    freeze and some closed or dormant. ``caller_certificates`` are SHA-256s acting for any court."""
    rng = random.Random(seed)
    accounts: list[dict[str, Any]] = []
    for s in people:
        if rng.random() >= hit_ratio:
            continue
        for _ in range(1 if rng.random() < 0.6 else 2):
            balance = Decimal(rng.randint(0, 50_000_000)) / 100
            acct: dict[str, Any] = {
                "accountNo": account_no(rng), "owner": s.id_number,
                "accountType": rng.choice(["DEMAND_DEPOSIT", "TIME_DEPOSIT"]),
                "currency": "CNY", "balance": f"{balance:.2f}",
                "status": rng.choices(["ACTIVE", "DORMANT", "CLOSED"], [90, 7, 3])[0],
                "openedOn": f"{rng.randint(2005, 2025)}-{rng.randint(1, 12):02d}-"
                            f"{rng.randint(1, 28):02d}",
                "freezes": [],
            }
            if acct["status"] != "CLOSED" and balance > 100 and rng.random() < 0.15:
                frozen = (balance / 2).quantize(Decimal("0.01"))
                acct["freezes"].append({
                    "freezeId": f"FRZ-FX-{len(accounts):06d}",
                    "authority": {"name": "示例新区人民法院", "courtCode": "310115"},
                    "caseNo": "(2025)沪0115执567号", "status": "ACTIVE",
                    "requestedAmount": f"{frozen:.2f}", "frozenAmount": f"{frozen:.2f}",
                    "effectiveOn": "today-30", "frozenUntil": "today+300"})
            accounts.append(acct)
    return {
        "fixtureVersion": 1, "agency": "CBAS", "agencyName": bank_name,
        "callers": [{"certificateSha256": c, "courts": ["*"]} for c in caller_certificates],
        "subjects": [s.wire() for s in people],
        "accounts": accounts,
        "behaviour": {"pendingPolls": pending_polls, "retryAfterSeconds": retry_after_seconds,
                      "inject": []},
    }


# --- land registry (RERS) --------------------------------------------------------------------


def unit_no(rng: random.Random) -> str:
    """A real estate unit number of the RERS pattern ``[0-9]{12}[A-Z]{2}[0-9]{5}[A-Z][0-9]{8}``."""
    return (f"110105{rng.randint(0, 999999):06d}GB{rng.randint(0, 99999):05d}"
            f"F{rng.randint(0, 99999999):08d}")


def rers_fixture(
    people: list[SyntheticSubject],
    caller_certificates: list[str],
    *,
    seed: int = 1,
    hit_ratio: float = 0.2,
    response_delay_ms: int = 0,
) -> dict[str, Any]:
    """A RERS fixture where about ``hit_ratio`` of the subjects own a unit (a few by pre-sale
    notice, some mortgaged, some already sealed by another court)."""
    rng = random.Random(seed)
    properties: list[dict[str, Any]] = []
    for s in people:
        if rng.random() >= hit_ratio:
            continue
        pre_notice = rng.random() < 0.15
        area = Decimal(rng.randint(3000, 30000)) / 100
        registered = (f"{rng.randint(2005, 2025)}-{rng.randint(1, 12):02d}-"
                      f"{rng.randint(1, 28):02d}")
        unit: dict[str, Any] = {
            "unitNo": unit_no(rng),
            "certificateNo": f"京({registered[:4]})示例区不动产"
                             f"{'证明' if pre_notice else '权'}第{rng.randint(1, 9999999):07d}号",
            "registrationType": "PRE_NOTICE" if pre_notice else "OWNERSHIP",
            "location": f"示例市示例区示例路{rng.randint(1, 300)}号{rng.randint(1, 30)}号楼"
                        f"{rng.randint(1, 30)}{rng.randint(1, 4):02d}",
            "areaSqm": f"{area:.2f}",
            "use": rng.choice(["RESIDENTIAL", "RESIDENTIAL", "COMMERCIAL", "OFFICE"]),
            "ownershipType": "SOLE", "registeredOn": registered,
            "owners": [{"idNumber": s.id_number, "share": "1.0000"}],
            "mortgages": [], "seals": [],
        }
        if not pre_notice and rng.random() < 0.4:
            unit["mortgages"].append({
                "rank": 1, "mortgagee": "示例银行示例支行",
                "securedAmount": f"{Decimal(rng.randint(100000, 3000000)):.2f}",
                "currency": "CNY", "registeredOn": registered})
        if not pre_notice and rng.random() < 0.1:
            unit["seals"].append({
                "sealId": f"SEAL-FX-{len(properties):06d}",
                "authority": {"name": "示例新区人民法院", "courtCode": "310115"},
                "caseNo": "(2025)沪0115执321号", "mode": "SEAL", "status": "ACTIVE",
                "effectiveOn": "today-100", "sealedUntil": "today+900"})
        properties.append(unit)
    return {
        "fixtureVersion": 1, "agency": "RERS", "agencyName": "示例市不动产登记中心",
        "callers": [{"certificateSha256": c, "courts": ["*"]} for c in caller_certificates],
        "subjects": [s.wire() for s in people],
        "properties": properties,
        "behaviour": {"responseDelayMs": response_delay_ms, "inject": []},
    }
