"""The ``gateway`` command as a user runs it: a CSV batch submitted and followed to its results
file, and every mistake answered with one line on stderr and a non-zero exit."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from pathlib import Path

from gateway import testing
from gateway.security.keys import load_ed25519_public, public_jwk
from tests.conftest import DATA, TOKEN, gateway_config, running_gateway

COURT_KEY = DATA / "keys" / "vrs-court.jwk.json"
AGENCY_KEY = DATA / "keys" / "vrs-agency.jwk.json"


async def gateway_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})})
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("gateway: ")
    for n in needles:
        assert n in lines[0], lines[0]


async def test_submit_a_csv_and_get_results(tmp_path: Path) -> None:
    people = testing.subjects(12, seed=21)
    caller = {"keyid": json.loads(COURT_KEY.read_text())["kid"],
              "publicKeyJwk": public_jwk(load_ed25519_public(COURT_KEY)), "courts": ["110105"]}
    fixture = testing.vrs_fixture(people, [caller], seed=21, pending_polls=0, hit_ratio=0.5)
    csv_path = tmp_path / "subjects.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["idType", "idNumber", "name", "caseNo", "assistanceNoticeId",
                    "assistanceNoticeSha256", "ref"])
        for i, item in enumerate(testing.inquiry_items(people)):
            notice = item["documents"]["assistanceNotice"]
            s = item["subject"]
            w.writerow([s["idType"], s["idNumber"], s["name"], item["caseNo"],
                        notice["documentId"], notice["sha256"], f"row-{i}"])
    out = tmp_path / "results.ndjson"
    async with testing.mock_vrs(fixture, AGENCY_KEY, rate_limit=1000) as vrs:
        config = gateway_config(tmp_path, [{
            "id": "vrs", "kind": "vehicle", "adapter": "vrs", "endpoint": vrs.url,
            "signing_key": str(COURT_KEY), "agency_key": str(AGENCY_KEY)}])
        async with running_gateway(config) as gw:
            code, stdout, stderr = await gateway_cli(
                "submit", str(csv_path), "--url", gw.url, "--court", "110105",
                "--court-name", "示例区人民法院", "--officer-name", "王明",
                "--officer-credential", "J110105000123", "--out", str(out),
                env={"GATEWAY_TOKEN": TOKEN})
            assert code == 0, stderr
            assert "batch subjects accepted: 12 subjects" in stdout
            assert "12 results written" in stdout
            code, stdout, _ = await gateway_cli("status", "subjects", "--url", gw.url,
                                                "--token", TOKEN)
            assert code == 0 and json.loads(stdout)["state"] == "done"
            code, _, stderr = await gateway_cli("status", "nope", "--url", gw.url,
                                                "--token", TOKEN)
            one_line_error(code, stderr, "batch nope not found")
            # Same file again: the same batch, not a second one.
            code, stdout, stderr = await gateway_cli(
                "submit", str(csv_path), "--url", gw.url, "--court", "110105",
                "--court-name", "示例区人民法院", "--officer-name", "王明",
                "--officer-credential", "J110105000123", "--no-wait", "--token", TOKEN)
            assert code == 0, stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["ref"] for x in lines) == sorted(f"row-{i}" for i in range(12))
    owners = {v["owner"] for v in fixture["vehicles"]}
    hits = {x["result"]["subject"]["idNumber"] for x in lines if x["result"]["vehicles"]}
    assert hits == owners


async def test_cli_mistakes_are_one_line_and_non_zero(tmp_path: Path) -> None:
    code, _, err = await gateway_cli("serve", "--config", str(tmp_path / "absent.toml"))
    one_line_error(code, err, "configuration file not found")

    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nport = "x"\n')
    code, _, err = await gateway_cli("serve", "--config", str(bad))
    one_line_error(code, err, "gateway.port")

    # A store that cannot be opened (its path is a directory) is one line naming the store.
    (tmp_path / "db-is-a-dir").mkdir()
    store_bad = tmp_path / "store.toml"
    store_bad.write_text('[store]\nurl = "sqlite+aiosqlite:///db-is-a-dir"\n')
    code, _, err = await gateway_cli("serve", "--config", str(store_bad))
    one_line_error(code, err, "cannot open the store")

    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())",
        "submit", str(tmp_path / "x.csv"), "--court", "110105", "--court-name", "x",
        "--officer-name", "x", "--officer-credential", "x",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    _, err_b = await proc.communicate()
    one_line_error(proc.returncode or 0, err_b.decode(), "GATEWAY_TOKEN")

    code, _, err = await gateway_cli("submit", str(tmp_path / "x.csv"), "--token", TOKEN,
                                     "--court", "110105", "--court-name", "x",
                                     "--officer-name", "x", "--officer-credential", "x")
    one_line_error(code, err, "no such file")

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("idType,idNumber\nRESIDENT_ID,1\n")
    code, _, err = await gateway_cli("submit", str(wrong), "--token", TOKEN,
                                     "--url", "http://127.0.0.1:9", "--court", "110105",
                                     "--court-name", "x", "--officer-name", "x",
                                     "--officer-credential", "x")
    one_line_error(code, err, "CSV lacks column(s)", "caseNo")


async def test_submit_reports_the_gateways_validation_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    item = next(testing.inquiry_items(testing.subjects(1)))
    item["subject"]["idNumber"] = "110105194912310021"  # wrong check character
    bad.write_text(json.dumps(item, ensure_ascii=False) + "\n")
    config = gateway_config(tmp_path, [{"id": "vrs", "kind": "vehicle", "adapter": "vrs",
                                        "endpoint": "http://127.0.0.1:9",
                                        "signing_key": str(COURT_KEY),
                                        "agency_key": str(AGENCY_KEY)}])
    async with running_gateway(config) as gw:
        code, _, err = await gateway_cli(
            "submit", str(bad), "--url", gw.url, "--token", TOKEN, "--court", "110105",
            "--court-name", "示例区人民法院", "--officer-name", "王明",
            "--officer-credential", "J110105000123")
    one_line_error(code, err, "HTTP 422", "/items/0/subject/idNumber")
