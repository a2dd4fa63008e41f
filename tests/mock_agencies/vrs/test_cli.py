"""The ``mock-agencies`` command: one-line errors for bad input, and a real served process."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import aiohttp
import pytest

from mock_agencies.cli import main
from tests.mock_agencies.vrs.client import KEYS, ROOT, SignedClient

KEY = str(KEYS / "vrs-agency.jwk.json")
BASE = ["serve", "--agency", "vrs", "--port", "0", "--public-url", "http://vrs.test", "--key", KEY]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: command"),
        (["serve"], "required"),
        (["serve", "--agency", "vrs", "--port", "0", "--public-url", "http://x"], "--key"),
        (["serve", "--agency", "dmv", "--port", "1", "--key", KEY], "invalid choice"),
        (["serve", "--agency", "cbas", "--port", "1", "--key", KEY], "needs --cert"),
        (["serve", "--agency", "rers", "--port", "1", "--key", KEY], "needs --cert"),
        ([*BASE, "--error-rate-503", "1.5"], "share from 0 to 1"),
        ([*BASE, "--port", "70000"], "TCP port"),
        ([*BASE, "--latency-ms", "5", "--latency-uniform", "1", "2"], "not allowed with"),
        ([*BASE, "--inject", "createSeizure:BUSY:1"], "cannot be injected"),
        ([*BASE, "--inject", "nonsense"], "OPERATION:CODE:COUNT"),
        ([*BASE, "--bogus"], "unrecognized arguments"),
        ([*BASE[:-1], "/nonexistent/key.jwk"], "No such file"),
        ([*BASE, "--fixture", "/nonexistent/fixture.json"], "cannot read"),
        ([*BASE, "--public-url", "ftp://vrs.test"], "http or https"),
        (["serve", "--agency", "vrs", "--port", "0", "--key", KEY], "--public-url"),
    ],
)
def test_cli_bad_input_is_one_line_and_non_zero(capsys, argv, message) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mock-agencies: error: "), err
    assert message in err


def test_cli_bad_fixture_names_the_member(capsys, tmp_path) -> None:
    data = json.loads((ROOT / "mock_agencies" / "vrs" / "fixture.json").read_text("utf-8"))
    data["vehicles"][0]["vin"] = "OOPS"
    bad = tmp_path / "fixture.json"
    bad.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    assert main([*BASE, "--fixture", str(bad)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fixture member vehicles[0].vin" in err


async def test_cli_serve_answers_a_signed_get() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mock_agencies.cli", *BASE, "--admin-port", "0", "--seed", "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
        ports = re.findall(r"http://127\.0\.0\.1:(\d+)", line)
        assert len(ports) == 2, line
        async with aiohttp.ClientSession(f"http://127.0.0.1:{ports[0]}") as session:
            client = SignedClient(session, time.time, public_url="http://vrs.test")  # type: ignore[arg-type]
            r = await client.get("/v2/vehicle-queries/VQ-1")  # verifies the response signature
            assert r.status == 404 and r.problem == "query-not-found"
            r = await client.create_query()
            assert r.status == 202
        async with (
            aiohttp.ClientSession(f"http://127.0.0.1:{ports[1]}") as admin,
            admin.get("/healthz") as resp,
        ):
            assert await resp.json() == {"status": "ok"}
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=10)
    assert proc.returncode == 0
