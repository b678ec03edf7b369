"""The invariant checker itself, on hand-made histories (no store involved)."""

from __future__ import annotations

import pytest

from tests.fault._checker import Checker, LostWrite

S = "s1"


def test_correct_sequential_history_passes() -> None:
    c = Checker()
    t = c.begin_write(S, {"session": {"a": 1}, "pre-key": {"7": None}})
    c.ack(t)
    c.check_read(S, "session", ["a"], {"a": 1}, started_at_seq=c.now())
    c.check_read(S, "pre-key", ["7"], {}, started_at_seq=c.now())
    t = c.begin_write(S, {"session": {"a": 2}})
    c.ack(t)
    c.check_read(S, "session", ["a"], {"a": 2}, started_at_seq=c.now())
    assert c.lost_writes({(S, "session", "a"): 2}) == []
    report = c.report()
    assert (report["acked"], report["reads"], report["stale_reads"], report["lost"]) == (2, 3, 0, 0)
    assert report["out_of_order"] == 0


def test_concurrent_and_unknown_writes_are_allowed() -> None:
    c = Checker()
    c.ack(c.begin_write(S, {"session": {"a": 1}}))
    in_flight = c.begin_write(S, {"session": {"a": 2}})
    start = c.now()
    # A read overlapping an in-flight write may see either value.
    c.check_read(S, "session", ["a"], {"a": 1}, started_at_seq=start)
    c.check_read(S, "session", ["a"], {"a": 2}, started_at_seq=start)
    c.fail(in_flight, TimeoutError())
    # Failed after the last ack began: its outcome is unknown, both values stay possible.
    c.check_read(S, "session", ["a"], {"a": 2}, started_at_seq=c.now(), reader="r2")
    c.check_read(S, "session", ["a"], {"a": 1}, started_at_seq=c.now(), reader="r3")
    assert c.lost_writes({(S, "session", "a"): 2}) == []
    assert c.lost_writes({(S, "session", "a"): 1}) == []
    assert c.report()["stale_reads"] == 0
    assert c.report()["errors"] == {"TimeoutError": 1}


def test_lost_acknowledged_write_is_detected() -> None:
    c = Checker()
    c.ack(c.begin_write(S, {"session": {"a": 1}}))
    c.ack(c.begin_write(S, {"session": {"a": 2}, "sender-key": {"g": 3}}))
    lost = c.lost_writes({(S, "session", "a"): 1, (S, "sender-key", "g"): 3})
    assert lost == [LostWrite((S, "session", "a"), expected=2, found=1)]
    assert c.lost_writes({(S, "session", "a"): 2}) == [
        LostWrite((S, "sender-key", "g"), expected=3, found=None)
    ]
    assert c.report()["lost"] == 1


def test_acknowledged_delete_that_comes_back_is_lost() -> None:
    c = Checker()
    c.ack(c.begin_write(S, {"pre-key": {"5": 10}}))
    c.ack(c.begin_write(S, {"pre-key": {"5": None}}))
    assert c.lost_writes({(S, "pre-key", "5"): None}) == []
    assert c.lost_writes({(S, "pre-key", "5"): 10}) == [
        LostWrite((S, "pre-key", "5"), expected=None, found=10)
    ]


def test_stale_read_is_detected() -> None:
    c = Checker()
    c.ack(c.begin_write(S, {"session": {"a": 1}}))
    c.ack(c.begin_write(S, {"session": {"a": 2}}))
    c.check_read(S, "session", ["a"], {"a": 1}, started_at_seq=c.now())
    c.check_read(S, "session", ["a"], {}, started_at_seq=c.now())  # absent: also stale
    c.check_read(S, "session", ["a"], {"a": 99}, started_at_seq=c.now())  # nobody wrote 99
    assert c.report()["stale_reads"] == 3


def test_failed_write_ended_before_the_last_ack_may_not_resurface() -> None:
    c = Checker()
    c.ack(c.begin_write(S, {"session": {"a": 1}}))
    c.fail(c.begin_write(S, {"session": {"a": 2}}), ConnectionError())
    c.ack(c.begin_write(S, {"session": {"a": 3}}))
    c.check_read(S, "session", ["a"], {"a": 2}, started_at_seq=c.now())
    assert c.report()["stale_reads"] == 1
    assert [w.found for w in c.lost_writes({(S, "session", "a"): 2})] == [2]


def test_read_begun_before_the_ack_may_see_the_older_value() -> None:
    c = Checker()
    c.ack(c.begin_write(S, {"session": {"a": 1}}))
    start = c.now()
    t = c.begin_write(S, {"session": {"a": 2}})
    c.ack(t)
    c.check_read(S, "session", ["a"], {"a": 1}, started_at_seq=start)
    assert c.report()["stale_reads"] == 0


def test_regression_for_one_reader_is_out_of_order() -> None:
    c = Checker()
    c.ack(c.begin_write(S, {"session": {"a": 1}}))
    t2 = c.begin_write(S, {"session": {"a": 2}})
    early = c.now()
    # Reader r saw 2 while it was in flight (allowed), then 2 is acknowledged ...
    c.check_read(S, "session", ["a"], {"a": 2}, started_at_seq=early, reader="r")
    c.ack(t2)
    # ... so a later read by r returning 1 went back in time (and is stale too).
    c.check_read(S, "session", ["a"], {"a": 1}, started_at_seq=c.now(), reader="r")
    # Another reader seeing 1 is stale but not a regression of its own.
    c.check_read(S, "session", ["a"], {"a": 1}, started_at_seq=c.now(), reader="other")
    report = c.report()
    assert (report["out_of_order"], report["stale_reads"]) == (1, 2)


def test_regression_before_the_ack_is_not_out_of_order() -> None:
    c = Checker()
    c.ack(c.begin_write(S, {"session": {"a": 1}}))
    t2 = c.begin_write(S, {"session": {"a": 2}})
    c.check_read(S, "session", ["a"], {"a": 2}, started_at_seq=c.now(), reader="r")
    c.check_read(S, "session", ["a"], {"a": 1}, started_at_seq=c.now(), reader="r")
    c.fail(t2, TimeoutError())
    assert c.report()["out_of_order"] == 0


def test_duplicate_values_are_refused() -> None:
    c = Checker()
    c.begin_write(S, {"session": {"a": 1}})
    with pytest.raises(ValueError, match="counter"):
        c.begin_write(S, {"session": {"a": 1}})
