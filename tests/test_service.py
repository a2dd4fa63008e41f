"""``gateway serve``'s collector settings: start-up's objects frozen out of the collector's
sight, and full collections a tenth as often, so they do not pause every call in flight."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.service import FULL_COLLECTION_EVERY, settle_collector


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector")
def test_start_up_objects_are_frozen_and_full_collections_are_rarer() -> None:
    young, middle, _ = gc.get_threshold()
    gc.unfreeze()
    loaded = len(gc.get_objects())
    settle_collector()
    assert gc.get_freeze_count() >= loaded * 0.9  # what was loaded is out of sight
    assert gc.get_threshold() == (young, middle, FULL_COLLECTION_EVERY)
    assert FULL_COLLECTION_EVERY > 10  # CPython's default
