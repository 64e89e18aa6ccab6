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

The replay is compiled (numba): the memory stage runs it for every row of its tables and every step
of its search for the largest batch per card, hundreds of times a model. ``tests/allocator_reference.py``
is the same allocator in plain Python, and the tests hold the two to the same results.

A trace is a list of ``(id, size)`` pairs: ``size > 0`` allocates ``size`` bytes as block
``id`` (0 bytes: no block, as ``allocate(0)``); ``size < 0`` frees block ``id``. ``mark`` in ``replay`` names the position from which the
allocated peak is counted (where a measurement calls ``torch.cuda.reset_peak_memory_stats``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

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
    """Runs ``trace`` (``(id, size)`` pairs, see the module's docstring; or a pair of integer
    arrays ``(ids, sizes)``) through a fresh allocator; raises ``OutOfMemory`` where a request
    cannot be served within ``capacity`` bytes of segments (None: no limit). The peaks count from
    position ``mark`` on, starting from what is allocated and reserved there, as
    ``torch.cuda.reset_peak_memory_stats`` called at ``mark`` leaves them."""
    if isinstance(trace, tuple) and len(trace) == 2 and isinstance(trace[0], np.ndarray):
        ids, sizes = trace
    else:
        pairs = np.array(list(trace), dtype=np.int64).reshape(-1, 2)
        ids, sizes = pairs[:, 0], pairs[:, 1]
    slots, _ = dense(ids)
    return replay_slots(slots, np.asarray(sizes, dtype=np.int64), capacity, mark)


def dense(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """``ids`` as numbers from 0 (the same id, the same number), and how many there are."""
    unique, slots = np.unique(np.asarray(ids, dtype=np.int64), return_inverse=True)
    return slots.astype(np.int64).reshape(-1), len(unique)


def replay_slots(slots: np.ndarray, sizes: np.ndarray, capacity: int | None = None,
                 mark: int = 0) -> Replay:
    """``replay`` with the blocks' ids already numbered from 0 (``dense``): what the memory stage
    calls for every row of its tables and every step of the search for the largest batch."""
    out = _replay(slots, sizes, int(slots.max()) + 1 if len(slots) else 0,
                  -1 if capacity is None else int(capacity), int(mark))
    status, max_allocated, max_reserved, allocated, reserved, segments, retries, n, size, \
        deficit = out
    if status:
        raise OutOfMemory(f"{size} bytes requested at event {n}: {allocated} allocated, "
                          f"{reserved} reserved, capacity {capacity}", deficit, allocated, reserved)
    return Replay(max_allocated, max_reserved, allocated, reserved, segments, retries)


@numba.njit(cache=True, nogil=True)
def _replay(slots, sizes, nslots, capacity, mark):  # pragma: no cover - compiled
    """The allocator, compiled. A block is an index into the arrays ``addr``, ``size``, ``free``,
    ``prev``, ``nxt`` (-1: none) and ``small``; the free blocks of pool ``p`` (0 large, 1 small)
    are ``keys[p, :count[p]]``, rows (size, address, block) sorted by size, then address.
    Returns (status: 0 ran, 1 out of memory; max allocated, max reserved, allocated,
    reserved, segments, retries; the event, bytes and deficit of the failed request)."""
    n_events = len(sizes)
    room = 2 * n_events + 2  # each request makes at most a segment's block and a split's rest
    addr = np.empty(room, np.int64)
    size_of = np.empty(room, np.int64)
    free = np.empty(room, np.bool_)
    prev = np.empty(room, np.int64)
    nxt = np.empty(room, np.int64)
    small_of = np.empty(room, np.bool_)
    keys = np.empty((2, room, 3), np.int64)
    count = np.zeros(2, np.int64)
    live = np.full(nslots, -1, np.int64)
    blocks = 0
    allocated = reserved = max_allocated = max_reserved = 0
    segments = retries = next_addr = 0
    for n in range(n_events):
        if n == mark:
            max_allocated, max_reserved = allocated, reserved
        size = sizes[n]
        if size == 0:  # allocate(0) hands out no block
            continue
        if size > 0:  # ---- malloc
            size = MIN_BLOCK if size < MIN_BLOCK else MIN_BLOCK * ((size + MIN_BLOCK - 1) // MIN_BLOCK)
            small = size <= SMALL_SIZE
            p = 1 if small else 0
            i = _first_at_least(keys[p], count[p], size)
            if i < count[p]:  # best fit
                block = keys[p, i, 2]
                _remove(keys[p], count, p, i)
            else:  # a new segment
                if small:
                    total = SMALL_BUFFER
                elif size < MIN_LARGE_ALLOC:
                    total = LARGE_BUFFER
                else:
                    total = ROUND_LARGE * ((size + ROUND_LARGE - 1) // ROUND_LARGE)
                if capacity >= 0 and reserved + total > capacity:  # release cached segments, retry
                    retries += 1
                    for q in range(2):
                        kept = 0
                        for j in range(count[q]):
                            b = keys[q, j, 2]
                            if prev[b] == -1 and nxt[b] == -1:
                                reserved -= size_of[b]
                                segments -= 1
                            else:
                                keys[q, kept] = keys[q, j]
                                kept += 1
                        count[q] = kept
                    if reserved + total > capacity:
                        return (1, max_allocated, max_reserved, allocated, reserved, segments,
                                retries, n, size, reserved + total - capacity)
                block = blocks
                blocks += 1
                addr[block], size_of[block], free[block] = next_addr, total, True
                prev[block], nxt[block], small_of[block] = -1, -1, small
                next_addr += total
                segments += 1
                reserved += total
                if reserved > max_reserved:
                    max_reserved = reserved
            remaining = size_of[block] - size
            if (remaining >= MIN_BLOCK) if small else (remaining > SMALL_SIZE):  # split
                rest = blocks
                blocks += 1
                after = nxt[block]
                addr[rest], size_of[rest], free[rest] = addr[block] + size, remaining, True
                prev[rest], nxt[rest], small_of[rest] = block, after, small
                if after != -1:
                    prev[after] = rest
                nxt[block] = rest
                size_of[block] = size
                _insert(keys[p], count, p, remaining, addr[rest], rest)
            free[block] = False
            allocated += size_of[block]
            if allocated > max_allocated:
                max_allocated = allocated
            live[slots[n]] = block
        else:  # ---- free, merging with free neighbours of the segment
            block = live[slots[n]]
            if block == -1:
                continue
            live[slots[n]] = -1
            allocated -= size_of[block]
            p = 1 if small_of[block] else 0
            before, after = prev[block], nxt[block]
            if before != -1 and free[before]:
                _remove(keys[p], count, p, _find(keys[p], count[p], size_of[before], addr[before]))
                size_of[before] += size_of[block]
                nxt[before] = after
                if after != -1:
                    prev[after] = before
                block = before
            if after != -1 and free[after]:
                _remove(keys[p], count, p, _find(keys[p], count[p], size_of[after], addr[after]))
                size_of[block] += size_of[after]
                nxt[block] = nxt[after]
                if nxt[after] != -1:
                    prev[nxt[after]] = block
            free[block] = True
            _insert(keys[p], count, p, size_of[block], addr[block], block)
    if mark >= n_events:  # at the end
        max_allocated, max_reserved = allocated, reserved
    return (0, max_allocated, max_reserved, allocated, reserved, segments, retries, -1, 0, 0)


@numba.njit(cache=True, nogil=True)
def _first_at_least(keys, count, size):  # pragma: no cover - compiled
    """The first row of the sorted ``keys[:count]`` whose size is at least ``size``."""
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid, 0] < size:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _find(keys, count, size, address):  # pragma: no cover - compiled
    """The row of ``keys[:count]`` that is (size, address)."""
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid, 0] < size or (keys[mid, 0] == size and keys[mid, 1] < address):
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _insert(keys, count, p, size, address, block):  # pragma: no cover - compiled
    i = _find(keys, count[p], size, address)
    for j in range(count[p], i, -1):
        keys[j, 0], keys[j, 1], keys[j, 2] = keys[j - 1, 0], keys[j - 1, 1], keys[j - 1, 2]
    keys[i, 0], keys[i, 1], keys[i, 2] = size, address, block
    count[p] += 1


@numba.njit(cache=True, nogil=True)
def _remove(keys, count, p, i):  # pragma: no cover - compiled
    for j in range(i, count[p] - 1):
        keys[j, 0], keys[j, 1], keys[j, 2] = keys[j + 1, 0], keys[j + 1, 1], keys[j + 1, 2]
    count[p] -= 1


def fits(trace, capacity: int, mark: int = 0) -> bool:
    """Whether ``trace`` runs within ``capacity`` bytes of device memory."""
    try:
        replay(trace, capacity, mark)
    except OutOfMemory:
        return False
    return True
