"""PyTorch's CUDA caching allocator, replayed on a sequence of allocations and frees.

``torch.cuda.max_memory_allocated`` counts the blocks handed to tensors; whether a step fits on a
card depends on ``max_memory_reserved``: the segments the allocator has taken from the driver,
with their rounding and fragmentation. This module follows the native allocator of
``c10/cuda/CUDACachingAllocator.cpp`` with its default settings (no ``PYTORCH_CUDA_ALLOC_CONF``):

- every request is rounded up to a multiple of 512 bytes (512 at least);
- requests up to 1 MiB are served from the *small* pool, whose segments are 2 MiB; larger ones
  from the *large* pool, whose segments are 20 MiB for requests under 10 MiB and the request
  rounded up to 2 MiB otherwise;
- a request takes the smallest free block of its pool that holds it (best fit; among blocks of
  one size, the lowest address);
- the block is split when what remains is at least 512 bytes (small pool) or more than 1 MiB
  (large pool); otherwise the whole block is handed out and counted as allocated;
- a freed block merges with free neighbours of its segment;
- when no free block holds a request, a new segment is taken; if the card has no room for it,
  every cached segment with nothing allocated in it is released and the segment is tried again;
  if it still has no room, the step is out of memory.

Not modelled: more than one stream (a step runs on one), ``expandable_segments:True``,
``max_split_size_mb``, ``roundup_power2_divisions``, ``garbage_collection_threshold`` (all off by
default), CUDA graphs. Addresses are assigned in the order segments are made; on a GPU they are
whatever the driver returns, which matters only to choose among free blocks of equal size.

A trace is a list of ``(id, size)`` pairs: ``size > 0`` allocates ``size`` bytes as block
``id`` (0 bytes: no block, as ``allocate(0)``); ``size < 0`` frees block ``id``. ``mark`` in ``replay`` names the position from which the
allocated peak is counted (where a measurement calls ``torch.cuda.reset_peak_memory_stats``).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass

MIN_BLOCK = 512  # kMinBlockSize
SMALL_SIZE = 1 << 20  # kSmallSize: requests up to this go to the small pool
SMALL_BUFFER = 2 << 20  # kSmallBuffer: small-pool segments
LARGE_BUFFER = 20 << 20  # kLargeBuffer: segments for requests between 1 and 10 MiB
MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc
ROUND_LARGE = 2 << 20  # kRoundLarge


class OutOfMemory(Exception):
    """The allocator could not serve a request within the card's capacity; ``deficit``: the
    bytes it lacked for the segment it needed, after releasing what it could."""

    def __init__(self, message: str, deficit: int = 0, allocated: int = 0, reserved: int = 0):
        super().__init__(message)
        self.deficit, self.allocated, self.reserved = deficit, allocated, reserved


def round_size(size: int) -> int:
    """A request as the allocator rounds it (``round_size``)."""
    if size < MIN_BLOCK:
        return MIN_BLOCK
    return MIN_BLOCK * ((size + MIN_BLOCK - 1) // MIN_BLOCK)


def segment_size(size: int) -> int:
    """The segment made for a rounded request no free block holds (``get_allocation_size``)."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * ((size + ROUND_LARGE - 1) // ROUND_LARGE)


@dataclass
class Replay:
    """What a replay ended with: peaks and counts, in bytes."""

    max_allocated: int
    max_reserved: int
    allocated: int
    reserved: int
    segments: int
    retries: int  # times cached segments were released to make room (num_alloc_retries)


def replay(trace, capacity: int | None = None, mark: int = 0) -> Replay:
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
                        raise OutOfMemory(f"{size} bytes requested at event {n}: {allocated} "
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


def fits(trace, capacity: int, mark: int = 0) -> bool:
    """Whether ``trace`` runs within ``capacity`` bytes of device memory."""
    try:
        replay(trace, capacity, mark)
    except OutOfMemory:
        return False
    return True
