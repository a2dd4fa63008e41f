"""What a competent Python developer would write instead of the gateway, for a bank's CBAS v1.

zeep's documented async client (``zeep.AsyncClient`` over ``AsyncTransport``, httpx underneath,
a connection pool as large as the concurrency) and zeep's WS-Security signature plugin
(``zeep.wsse.signature.BinarySignature``), adapted the way the bank's ICD asks: rsa-sha256 and
sha256 instead of zeep's SHA-1 defaults, a signed ``wsu:Timestamp``, ``mustUnderstand="1"``, and
responses verified against the bank's certificate (zeep's plugin would verify them against our
own). Each subject: ``InquireAccounts``, wait ``retryAfterSeconds``, ``FetchResult`` until the
ticket is no longer PENDING, under an ``asyncio.Semaphore`` of the given concurrency. Results
go to an NDJSON file; nothing else is kept: no store, no retries, no resumption after a crash.

``python scripts/bench_zeep.py --endpoint URL --wsdl bank-cbas-v1.wsdl --key court.key.pem
--cert court.cert.pem --bank-cert bank.cert.pem --items items.ndjson --concurrency 500``
(``items.ndjson``: a batch header line, then one inquiry item per line, as the gateway's API
takes them). Prints one JSON line: calls, failures, start and end times.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import xmlsec
import zeep
from lxml import etree
from zeep.helpers import serialize_object
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport
from zeep.wsse.signature import BinarySignature, _make_verify_key, _verify_envelope_with_key
from zeep.wsse.utils import WSU, get_security_header

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def _utc(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class CbasSignature(BinarySignature):
    """zeep's BinarySignature, with the bank's algorithms, a Timestamp and its certificate."""

    def __init__(self, key_file: str, cert_file: str, bank_cert_file: str) -> None:
        super().__init__(key_file, cert_file, signature_method=xmlsec.Transform.RSA_SHA256,
                         digest_method=xmlsec.Transform.SHA256)
        self.bank_cert = Path(bank_cert_file).read_bytes()

    def apply(self, envelope: etree._Element, headers: dict[str, str]) -> Any:
        security = get_security_header(envelope)
        security.set(etree.QName(SOAP11, "mustUnderstand"), "1")
        now = dt.datetime.now(dt.UTC)
        security.append(WSU.Timestamp(WSU.Created(_utc(now)),
                                      WSU.Expires(_utc(now + dt.timedelta(minutes=5)))))
        return super().apply(envelope, headers)  # signs the Body and the Timestamp

    def verify(self, envelope: etree._Element) -> etree._Element:
        _verify_envelope_with_key(envelope, _make_verify_key(self.bank_cert))
        return envelope


async def inquire(service: Any, header: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    receipt = await service.InquireAccounts(
        requestId=str(uuid.uuid4()), court=header["court"], caseNo=item["caseNo"],
        officer=header["officer"], assistanceNotice=item["documents"]["assistanceNotice"],
        subject=item["subject"])
    ticket, wait = receipt.ticketId, receipt.retryAfterSeconds
    while True:
        await asyncio.sleep(wait)
        answer = await service.FetchResult(requestId=str(uuid.uuid4()), ticketId=ticket)
        if answer.status != "PENDING":
            return dict(serialize_object(answer, dict))
        wait = answer.retryAfterSeconds or 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    lines = Path(args.items).read_text(encoding="utf-8").splitlines()
    header, items = json.loads(lines[0]), [json.loads(x) for x in lines[1:] if x.strip()]
    limits = httpx.Limits(max_connections=args.concurrency,
                          max_keepalive_connections=args.concurrency)
    http = httpx.AsyncClient(limits=limits, timeout=30)
    client = zeep.AsyncClient(args.wsdl, wsse=CbasSignature(args.key, args.cert, args.bank_cert),
                              transport=AsyncTransport(client=http))
    # AsyncClient.create_service returns a synchronous proxy (zeep 4.3); bind the async one.
    service = AsyncServiceProxy(client, client.wsdl.bindings["{urn:cbas:v1}CbasSoap11Binding"],
                                address=args.endpoint)
    gate = asyncio.Semaphore(args.concurrency)
    failed = 0

    async def one(item: dict[str, Any], out: Any) -> None:
        nonlocal failed
        async with gate:
            try:
                result = await inquire(service, header, item)
                out.write(json.dumps({"status": "done", "result": result}, default=str,
                                     ensure_ascii=False) + "\n")
            except Exception as exc:  # the script reports and moves on
                failed += 1
                out.write(json.dumps({"status": "failed", "error": repr(exc)}) + "\n")

    cpu0, started = os.times(), time.time()
    with open(args.out, "w", encoding="utf-8") as out:
        await asyncio.gather(*(one(item, out) for item in items))
    finished = time.time()
    await http.aclose()
    cpu = os.times()
    return {"calls": len(items), "failed": failed, "started": started, "finished": finished,
            "cpu": cpu.user + cpu.system - cpu0.user - cpu0.system}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--wsdl", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--bank-cert", required=True)
    p.add_argument("--items", required=True)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--out", default="zeep-results.ndjson")
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
