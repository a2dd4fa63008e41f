"""The mock registry's request schema check (VRS-01): the compiled fast path answers exactly as
the mock's strict validator does (ECMA-262 ``$``), on the published request examples and on
thousands of mutations of them, so a body the validator refuses is never let through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mock_agencies.common.schemas import component_conforms, component_validator, load_openapi
from mock_agencies.vrs.checks import OPENAPI_PATH, RequestSchemas, match_route
from mock_agencies.vrs.problems import VrsProblem
from tests.adapters.vrs.test_fastcheck import _mutations, _set

DATA = Path(__file__).resolve().parents[2] / "data" / "vrs"
REQUESTS = {  # example -> the request schema the mock checks it against
    "create-vehicle-query.request.json": "VehicleQueryRequest",
    "create-seizure.request.json": "SeizureRequest",
    "renew-seizure.request.json": "SeizureRenewalRequest",
    "release-seizure.request.json": "SeizureReleaseRequest",
}


@pytest.mark.parametrize(("example", "schema"), sorted(REQUESTS.items()))
def test_the_fast_path_agrees_with_the_strict_validator(example: str, schema: str) -> None:
    openapi = load_openapi(OPENAPI_PATH)
    validator = component_validator(openapi, schema)
    conforms = component_conforms(openapi, schema, validator)
    assert conforms is not None  # every request schema compiles: the fast path is in use
    doc = json.loads((DATA / example).read_text(encoding="utf-8"))
    candidates = [doc, *_mutations(doc)]
    # The strict reading of a final "$": a trailing newline matches re's "$" but not ECMA's.
    candidates += [_set(doc, path, value + "\n") for path, value in _strings(doc)]
    verdicts = {True: 0, False: 0}
    for candidate in candidates:
        expected = validator.is_valid(candidate)
        assert conforms(candidate) is expected, candidate
        verdicts[expected] += 1
    assert verdicts[True] and verdicts[False] > 100


def test_a_trailing_newline_is_still_refused_with_the_validators_message() -> None:
    doc = json.loads((DATA / "create-vehicle-query.request.json").read_text(encoding="utf-8"))
    doc["subject"]["idNumber"] += "\n"
    op, param = match_route("POST", "/v2/vehicle-queries")
    with pytest.raises(VrsProblem, match=r"schema violation at subject\.idNumber"):
        RequestSchemas().validate(op, param, doc)


def _strings(doc: object, path: tuple[object, ...] = ()) -> list[tuple[tuple[object, ...], str]]:
    if isinstance(doc, str):
        return [(path, doc)]
    if isinstance(doc, dict):
        return [found for k, v in doc.items() for found in _strings(v, (*path, k))]
    if isinstance(doc, list):
        return [found for i, v in enumerate(doc) for found in _strings(v, (*path, i))]
    return []
