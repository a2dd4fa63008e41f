"""``mock-agencies serve --agency rers``: one-line errors for bad input, and a real served process
answering signed SOAP 1.2 requests, with fault flags and the admin API."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import aiohttp
import pytest

from mock_agencies.cli import main
from tests.mock_agencies.rers.client import KEYS, ROOT, SignedClient, query, seal

KEY, CERT = str(KEYS / "rers-registry.key.pem"), str(KEYS / "rers-registry.cert.pem")
BASE = ["serve", "--agency", "rers", "--port", "0", "--key", KEY, "--cert", CERT]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--agency", "rers", "--port", "0", "--key", KEY], "needs --cert"),
        ([*BASE[:-1], "/nonexistent/cert.pem"], "No such file"),
        ([*BASE[:-3], "/nonexistent/key.pem", "--cert", CERT], "No such file"),
        ([*BASE[:-3], CERT, "--cert", CERT], "not a PEM private key"),
        ([*BASE[:-1], KEY], "not an X.509 certificate"),
        ([*BASE[:-3], str(KEYS / "rers-court.key.pem"), "--cert", CERT], "does not belong"),
        (
            [
                *BASE[:-3],
                str(KEYS / "cbas-bank.key.pem"),
                "--cert",
                str(KEYS / "cbas-bank.cert.pem"),
            ],
            "EC P-256",
        ),
        ([*BASE, "--inject", "SealProperty:SERVICE_UNAVAILABLE:1"], "cannot be injected"),
        ([*BASE, "--inject", "FreezeFunds:BUSY:1"], "unknown operation"),
        ([*BASE, "--fixture", "/nonexistent/fixture.json"], "cannot read"),
    ],
)
def test_cli_bad_input_is_one_line_and_non_zero(capsys, argv, message) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mock-agencies: error: "), err
    assert message in err


def test_cli_bad_fixture_names_the_member(capsys, tmp_path) -> None:
    data = json.loads((ROOT / "mock_agencies" / "rers" / "fixture.json").read_text("utf-8"))
    data["properties"][1]["owners"][0]["share"] = "0.7000"
    bad = tmp_path / "fixture.json"
    bad.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    assert main([*BASE, "--fixture", str(bad)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fixture member properties[1].owners" in err


async def test_cli_serve_answers_signed_soap12() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mock_agencies.cli", *BASE, "--admin-port", "0", "--seed", "1",
        "--inject", "SealProperty:BUSY:1", "--rate-limit", "100",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
        ports = re.findall(r"http://127\.0\.0\.1:(\d+)", line)
        assert len(ports) == 2 and "/rers/v1" in line, line
        async with aiohttp.ClientSession(f"http://127.0.0.1:{ports[0]}") as session:
            client = SignedClient(session, time.time)  # verifies the registry's signatures
            r = await client.call("QueryProperties", query())
            assert r.status == 200 and len(r.data["property"]) == 2
            members = seal()
            busy = await client.call("SealProperty", members)
            assert busy.status == 500 and busy.fault == "BUSY"
            placed = await client.call("SealProperty", members)  # the same requestId
            assert placed.status == 200 and placed.data["status"] == "ACTIVE"
        async with aiohttp.ClientSession(f"http://127.0.0.1:{ports[1]}") as admin:
            async with admin.get("/healthz") as resp:
                assert await resp.json() == {"status": "ok"}
            async with admin.get("/ledger") as resp:
                entries = (await resp.json())["entries"]
            assert [(e["event"], e["sealId"]) for e in entries] == [
                ("sealed", placed.data["sealId"])
            ]
            async with admin.get("/faults") as resp:
                assert (await resp.json())["inject"][-1] == {
                    "operation": "SealProperty", "code": "BUSY", "count": 0,
                }  # fmt: skip
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=10)
    assert proc.returncode == 0
