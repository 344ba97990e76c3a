"""The shard of a name: spread evenly, stable, and moved as little as possible."""

from __future__ import annotations

from collections import Counter

from thunderpush.cluster.shards import jump, shard_of

NAMES = [b"3:key:c:channel-%d" % number for number in range(20000)]


def test_names_spread_evenly_over_the_shards():
    for count in (2, 3, 5, 8):
        spread = Counter(shard_of(name, count) for name in NAMES)
        assert sorted(spread) == list(range(count))
        expected = len(NAMES) / count
        assert all(abs(n - expected) < 0.06 * expected for n in spread.values()), spread


def test_a_new_shard_takes_only_its_share_and_nothing_else_moves():
    for count in (1, 2, 3, 7):
        moved = [name for name in NAMES if shard_of(name, count) != shard_of(name, count + 1)]
        # Every name that moves goes to the new shard...
        assert {shard_of(name, count + 1) for name in moved} <= {count}
        # ...and about 1 / (count + 1) of them do.
        share = len(moved) / len(NAMES)
        assert abs(share - 1 / (count + 1)) < 0.02, (count, share)


def test_jump_gives_the_papers_buckets_and_the_shard_never_changes():
    # The paper's C function, compiled with gcc, gave these buckets for these keys.
    keys = (0, 1, 2**63, 2**64 - 1, 123456789, 987654321987654321)
    assert [jump(key, 10) for key in keys] == [0, 6, 5, 9, 7, 9]
    assert [jump(key, 1000) for key in keys] == [0, 549, 453, 313, 294, 18]
    # A node computing another shard than its peers would split a channel in
    # two: these may never change.
    assert [shard_of(name, 4) for name in NAMES[:8]] == [3, 1, 1, 0, 1, 0, 0, 0]
    assert shard_of(b"3:key:c:news", 1) == 0
