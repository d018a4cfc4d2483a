"""A trainer handle's queue has one reader at a time: what a replaced reader took is handed on."""

from __future__ import annotations

from tests.ui.fakes import FakeHandle
from tuitune import events as ev
from tuitune.run_feed import HandleSource
from tuitune.runs import RunDir


def test_events_a_replaced_reader_took_reach_the_next_one_first(tmp_path):
    handle = FakeHandle(RunDir.create(tmp_path, "run"))
    first, second = ev.make(ev.WARNING, text="disk full"), ev.make(ev.STEP, step=2, loss=1.0)
    handle.events.put(first)
    old = HandleSource(handle)
    taken = old.read(timeout=0)
    assert taken == [first]
    old.give_back(taken)  # the old reader was cancelled before it could show them
    handle.events.put(second)
    new = HandleSource(handle)
    assert new.read(timeout=0) == [first]
    assert new.read(timeout=0) == [second]
    assert new.read(timeout=0) == []


def test_given_back_events_still_skip_what_the_new_reader_showed_from_disk(tmp_path):
    handle = FakeHandle(RunDir.create(tmp_path, "run"))
    on_disk, fresh = ev.make(ev.STEP, step=1, loss=2.0), ev.make(ev.STEP, step=2, loss=1.5)
    HandleSource(handle).give_back([on_disk, fresh])
    new = HandleSource(handle, skip={(on_disk["type"], on_disk["ts"], on_disk["step"])})
    assert new.read(timeout=0) == [fresh]
