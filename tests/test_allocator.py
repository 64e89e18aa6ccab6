"""The caching allocator's replay against hand-built traces, each worked out from the rules of
``c10/cuda/CUDACachingAllocator.cpp`` (round_size, get_pool, get_allocation_size,
get_free_block, should_split, free_block's merging, release_cached_blocks and the retry)."""

import pytest

from zoo.measure import allocator
from zoo.measure.allocator import OutOfMemory, replay

KiB, MiB = 1 << 10, 1 << 20


def test_small_requests_share_a_2_mib_segment():
    r = replay([(1, 100), (2, 512), (3, 513)])
    # 100 -> 512, 512 -> 512, 513 -> 1024: one small segment of 2 MiB
    assert (r.max_allocated, r.max_reserved, r.segments) == (2048, 2 * MiB, 1)


def test_one_mib_is_small_and_one_byte_more_is_large():
    small = replay([(1, MiB)])
    assert (small.max_allocated, small.max_reserved) == (MiB, 2 * MiB)
    # 1 MiB + 1 byte -> 1 MiB + 512, from a 20 MiB segment, split (19 MiB - 512 remain)
    large = replay([(1, MiB + 1)])
    assert (large.max_allocated, large.max_reserved) == (MiB + 512, 20 * MiB)


def test_a_small_segment_is_split_down_to_512_bytes():
    r = replay([(1, MiB), (2, MiB - 512), (3, 512), (4, 512)])
    # the first three fill one 2 MiB segment exactly; the fourth needs a second segment
    assert (r.max_allocated, r.max_reserved, r.segments) == (2 * MiB + 512, 4 * MiB, 2)


def test_requests_from_10_mib_get_their_own_segment_rounded_to_2_mib():
    # 10 MiB + 1 -> 10 MiB + 512 in a 12 MiB segment: 2 MiB - 512 remain (> 1 MiB): split
    r = replay([(1, 10 * MiB + 1)])
    assert (r.max_allocated, r.max_reserved) == (10 * MiB + 512, 12 * MiB)
    # 11 MiB + 1 -> 11 MiB + 512 in a 12 MiB segment: 1 MiB - 512 remain: not split, the whole
    # 12 MiB block is handed out and counted as allocated
    r = replay([(1, 11 * MiB + 1)])
    assert (r.max_allocated, r.max_reserved) == (12 * MiB, 12 * MiB)
    # just under 10 MiB -> a 20 MiB segment
    assert replay([(1, 10 * MiB - 512)]).max_reserved == 20 * MiB


def test_a_freed_block_is_reused_and_the_smallest_that_fits_is_chosen():
    r = replay([(1, 12 * MiB), (1, -1), (2, 12 * MiB)])
    assert (r.max_allocated, r.max_reserved, r.segments) == (12 * MiB, 12 * MiB, 1)
    # free blocks of 14 and 12 MiB: an 11.5 MiB request takes the 12 MiB one (not split: 0.5
    # MiB remain) and a following 13.5 MiB request the 14 MiB one, so no segment is added
    trace = [(1, 14 * MiB), (2, 12 * MiB), (1, -1), (2, -1),
             (3, 11 * MiB + 512 * KiB), (4, 13 * MiB + 512 * KiB)]
    r = replay(trace)
    assert (r.max_reserved, r.segments, r.allocated) == (26 * MiB, 2, 26 * MiB)
    # choosing the first free block instead would give the 14 MiB block to the first request
    # and need a new 14 MiB segment for the second: 40 MiB


def test_freed_neighbours_merge_into_a_block_a_larger_request_can_use():
    # a and b are split from one 20 MiB segment; once both are freed the segment is one free
    # 20 MiB block again, which holds an 18 MiB request (split: 2 MiB remain)
    trace = [(1, 3 * MiB), (2, 3 * MiB), (1, -1), (2, -1), (3, 18 * MiB)]
    r = replay(trace)
    assert (r.max_reserved, r.segments, r.allocated) == (20 * MiB, 1, 18 * MiB)
    # with b still held, the free 3 MiB before it and the 14 MiB after it cannot merge, and an
    # 18 MiB request needs a segment of its own
    r = replay([(1, 3 * MiB), (2, 3 * MiB), (1, -1), (3, 18 * MiB)])
    assert (r.max_reserved, r.segments) == (38 * MiB, 2)


def test_small_and_large_pools_do_not_share_blocks():
    # a freed 2 MiB small segment cannot serve a large request, nor a large free block a small one
    r = replay([(1, MiB), (1, -1), (2, 2 * MiB), (2, -1), (3, 4 * KiB)])
    assert (r.max_reserved, r.segments) == (22 * MiB, 2)


def test_release_and_retry_before_out_of_memory():
    # capacity 40 MiB: three 12 MiB segments; two freed. A 16 MiB request finds no free block and
    # no room for a segment (36 + 16 > 40): the two whole free segments go back and it is retried
    trace = [(1, 12 * MiB), (2, 12 * MiB), (3, 12 * MiB), (1, -1), (3, -1), (4, 16 * MiB)]
    r = replay(trace, capacity=40 * MiB)
    assert (r.reserved, r.segments, r.retries, r.allocated) == (28 * MiB, 2, 1, 28 * MiB)
    assert r.max_reserved == 36 * MiB
    with pytest.raises(OutOfMemory):  # still too much after the release
        replay(trace + [(5, 14 * MiB)], capacity=40 * MiB)


def test_fragmentation_fails_a_request_the_free_total_would_hold():
    # one 30 MiB segment, split into a (12), b (12) and a free 6; a is freed: 18 MiB are free in
    # it, in two pieces around b, and 10 MiB of the card are unused: 28 MiB in all. A 16 MiB
    # request fits in no piece, no segment can be released (the only one holds b), and a new
    # 16 MiB segment would pass the 40 MiB capacity: out of memory.
    trace = [(0, 30 * MiB), (0, -1), (1, 12 * MiB), (2, 12 * MiB), (1, -1)]
    r = replay(trace, capacity=40 * MiB)
    assert (r.reserved, r.allocated) == (30 * MiB, 12 * MiB)
    assert 40 * MiB - r.allocated >= 16 * MiB
    assert not allocator.fits(trace + [(3, 16 * MiB)], capacity=40 * MiB)
    # with 46 MiB it fits
    assert allocator.fits(trace + [(3, 16 * MiB)], capacity=46 * MiB)


def test_peaks_count_from_the_mark():
    trace = [(1, 40 * MiB), (1, -1), (2, 12 * MiB), (3, 12 * MiB)]
    r = replay(trace, mark=2)
    # the 40 MiB segment is cached: at the mark 0 allocated, 40 reserved; b and c reuse it
    assert (r.max_allocated, r.max_reserved) == (24 * MiB, 40 * MiB)
    assert replay(trace).max_allocated == 40 * MiB
    assert replay(trace, mark=len(trace)).max_allocated == 24 * MiB


def test_rounding_rules():
    assert [allocator.round_size(n) for n in (0, 1, 512, 513)] == [512, 512, 512, 1024]
    assert allocator.segment_size(MiB) == 2 * MiB
    assert allocator.segment_size(MiB + 512) == 20 * MiB
    assert allocator.segment_size(10 * MiB) == 10 * MiB
    assert allocator.segment_size(10 * MiB + 512) == 12 * MiB


def _random_trace(rng, events: int) -> list:
    """Allocations of every pool's sizes (and of 0 bytes) and frees in random order, with a free
    of an id never allocated and an id allocated twice now and then."""
    live, trace, ident = [], [], 0
    for _ in range(events):
        if live and rng.random() < 0.45:
            trace.append((live.pop(rng.randrange(len(live))), -1))
            continue
        kind = rng.random()
        size = (0 if kind < 0.03 else rng.randint(1, 4 * KiB) if kind < 0.3
                else rng.randint(1, 3 * MiB) if kind < 0.7 else rng.randint(1, 60 * MiB))
        trace.append((ident, size))
        live.append(ident)
        ident += 1
    if trace and rng.random() < 0.2:
        trace += [(10**12, -1), (0, 1000)]
    return trace


def test_compiled_replay_agrees_with_the_plain_python_one_on_random_traces():
    """The compiled allocator against the plain-Python one it replaced: the same peaks, counts,
    retries, and the same out-of-memory failures with the same deficit, for random traces,
    capacities and marks (about half of them out of memory or releasing cached segments)."""
    import random

    from allocator_reference import replay_reference

    def outcome(run, trace, capacity, mark):
        try:
            return run(trace, capacity, mark)
        except OutOfMemory as oom:
            return str(oom), oom.deficit, oom.allocated, oom.reserved

    rng = random.Random(0)
    kinds = {"ran": 0, "retried": 0, "out of memory": 0}
    for _ in range(1500):
        trace = _random_trace(rng, rng.randint(0, 300))
        capacity = rng.choice([None, rng.randint(1, 400) * MiB])
        mark = rng.randint(0, len(trace) + 1)
        expected = outcome(replay_reference, trace, capacity, mark)
        assert outcome(replay, trace, capacity, mark) == expected, (trace, capacity, mark)
        kinds["out of memory" if isinstance(expected, tuple) else
              "retried" if expected.retries else "ran"] += 1
    assert min(kinds.values()) > 30, kinds  # every path taken
