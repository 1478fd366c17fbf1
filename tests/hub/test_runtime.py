"""Process set-up for serving: the collector tuning `certhub serve` applies once built."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hub.runtime import GC_YOUNG_THRESHOLD, tune_gc_for_serving


@pytest.fixture
def restored_gc() -> Iterator[tuple[int, int, int]]:
    """The collector's settings before the test, put back after it (they are per process)."""
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def test_serving_freezes_what_start_up_built_and_collects_young_objects_less_often(
    restored_gc: tuple[int, int, int],
) -> None:
    built_at_start_up = [object()]  # stands for the modules, mappers and registry
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_gc_for_serving()
    # Everything alive now is out of the collector's sight, so full collections skip it.
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(built_at_start_up)
    assert all(o is not built_at_start_up for o in gc.get_objects())
    # Only the young generation's threshold moves; the older two keep their ratios.
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, restored_gc[1], restored_gc[2])
    assert restored_gc[0] < GC_YOUNG_THRESHOLD
