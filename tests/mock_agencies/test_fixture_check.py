"""The mocks check a fixture with the compiled schema check first (a 100,000-subject fixture
took jsonschema 10 s): its verdict must be the validator's on every packaged fixture and on
thousands of mutations of them, since a wrong "valid" would load a bad fixture."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from mock_agencies.common.fixture import FixtureError, _compiled, validate_fixture
from mock_agencies.common.schemas import StrictValidator
from tests.adapters.vrs.test_fastcheck import _mutations


def _fixture_and_schema(agency: str) -> tuple[object, dict[str, object]]:
    server = importlib.import_module(f"mock_agencies.{agency}.server")
    schema = importlib.import_module(f"mock_agencies.{agency}.fixture").FIXTURE_SCHEMA
    return json.loads(Path(server.DEFAULT_FIXTURE).read_text(encoding="utf-8")), schema


@pytest.mark.parametrize("agency", ["vrs", "cbas"])
def test_the_compiled_check_gives_the_validators_verdicts(agency: str) -> None:
    fixture, schema = _fixture_and_schema(agency)
    validator = StrictValidator(schema)
    conforms = _compiled(schema, validator)
    assert conforms is not None  # the fast path is taken for this agency's fixtures
    documents = [fixture, *_mutations(fixture)]
    assert len(documents) > 1000
    verdicts = [(conforms(doc), validator.is_valid(doc)) for doc in documents]
    assert all(fast == slow for fast, slow in verdicts)
    assert any(not slow for _, slow in verdicts) and verdicts[0] == (True, True)


def test_a_schema_the_compiler_cannot_read_is_checked_by_the_validator_alone() -> None:
    """The land registry's fixture schema uses minItems, which the compiler does not
    implement: no compiled check, and a bad fixture is still refused with its member named."""
    fixture, schema = _fixture_and_schema("rers")
    assert _compiled(schema, StrictValidator(schema)) is None
    validate_fixture(fixture, schema)
    assert isinstance(fixture, dict)
    bad = {**fixture, "version": "no"}
    with pytest.raises(FixtureError, match="version"):
        validate_fixture(bad, schema)


def test_a_bad_fixture_is_named_by_the_validator_after_the_fast_check() -> None:
    fixture, schema = _fixture_and_schema("vrs")
    assert isinstance(fixture, dict)
    bad = {**fixture, "vehicles": [{**fixture["vehicles"][0], "plate": 7}]}
    with pytest.raises(FixtureError, match=r"vehicles\[0\]\.plate"):
        validate_fixture(bad, schema)
