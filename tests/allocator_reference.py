"""A second implementation of the caching allocator's replay, for the tests: zoo's earlier one,
in plain Python (lists and ``bisect``), which the compiled ``zoo.measure.allocator.replay`` replaced
for speed. The two must agree on every trace (tests/test_allocator.py runs both on random ones)."""

from bisect import bisect_left, insort

from zoo.measure import allocator
from zoo.measure.allocator import (LARGE_BUFFER, MIN_BLOCK, MIN_LARGE_ALLOC, ROUND_LARGE,
                                   SMALL_BUFFER, SMALL_SIZE, Replay)


def replay_reference(trace, capacity: int | None = None, mark: int = 0) -> Replay:
    """Runs ``trace`` (``(id, size)`` pairs, see the module's docstring) through a fresh
    allocator; raises ``OutOfMemory`` where a request cannot be served within ``capacity`` bytes
    of segments (None: no limit). The peaks count from position ``mark`` on, starting from what
    is allocated and reserved there, as ``torch.cuda.reset_peak_memory_stats`` called at
    ``mark`` leaves them.

    One function, its state in local variables: it runs for every row of the memory tables and
    every step of the search for the largest batch. A block is a list
    ``[address, size, is_free, previous, next, is_small]``; the free blocks of each pool are kept
    as sorted ``(size, address)`` keys with a dict from key to block."""
    pools = ([], [])  # large, small
    by_key: dict = {}
    live: dict = {}
    allocated = reserved = max_allocated = max_reserved = 0
    segments = retries = next_addr = 0
    limit = capacity if capacity is not None else float("inf")
    n = -1
    for n, (ident, size) in enumerate(trace):
        if n == mark:
            max_allocated, max_reserved = allocated, reserved
        if size == 0:  # allocate(0) hands out no block
            continue
        if size > 0:  # ---- malloc
            size = MIN_BLOCK if size < MIN_BLOCK else MIN_BLOCK * ((size + MIN_BLOCK - 1) // MIN_BLOCK)
            small = size <= SMALL_SIZE
            pool = pools[small]
            i = bisect_left(pool, (size, -1))
            if i < len(pool):  # best fit
                block = by_key.pop(pool.pop(i))
            else:  # a new segment
                total = (SMALL_BUFFER if small else LARGE_BUFFER if size < MIN_LARGE_ALLOC
                         else ROUND_LARGE * ((size + ROUND_LARGE - 1) // ROUND_LARGE))
                if reserved + total > limit:  # release the cached segments and retry
                    retries += 1
                    for p in pools:
                        keep = []
                        for key in p:
                            b = by_key[key]
                            if b[3] is None and b[4] is None:
                                del by_key[key]
                                reserved -= b[1]
                                segments -= 1
                            else:
                                keep.append(key)
                        p[:] = keep
                    if reserved + total > limit:
                        raise allocator.OutOfMemory(f"{size} bytes requested at event {n}: {allocated} "
                                          f"allocated, {reserved} reserved, capacity {capacity}",
                                          reserved + total - capacity, allocated, reserved)
                block = [next_addr, total, True, None, None, small]
                next_addr += total
                segments += 1
                reserved += total
                if reserved > max_reserved:
                    max_reserved = reserved
            remaining = block[1] - size
            if remaining >= MIN_BLOCK if small else remaining > SMALL_SIZE:  # split
                after = block[4]
                rest = [block[0] + size, remaining, True, block, after, small]
                if after is not None:
                    after[3] = rest
                block[4] = rest
                block[1] = size
                key = (remaining, rest[0])
                insort(pool, key)
                by_key[key] = rest
            block[2] = False
            allocated += block[1]
            if allocated > max_allocated:
                max_allocated = allocated
            live[ident] = block
        else:  # ---- free, merging with free neighbours of the segment
            block = live.pop(ident, None)
            if block is None:
                continue
            allocated -= block[1]
            pool = pools[block[5]]
            prev, after = block[3], block[4]
            if prev is not None and prev[2]:
                key = (prev[1], prev[0])
                del pool[bisect_left(pool, key)]
                del by_key[key]
                prev[1] += block[1]
                prev[4] = after
                if after is not None:
                    after[3] = prev
                block = prev
            if after is not None and after[2]:
                key = (after[1], after[0])
                del pool[bisect_left(pool, key)]
                del by_key[key]
                block[1] += after[1]
                block[4] = after[4]
                if after[4] is not None:
                    after[4][3] = block
            block[2] = True
            key = (block[1], block[0])
            insort(pool, key)
            by_key[key] = block
    if mark > n:  # at the end
        max_allocated, max_reserved = allocated, reserved
    return Replay(max_allocated, max_reserved, allocated, reserved, segments, retries)
