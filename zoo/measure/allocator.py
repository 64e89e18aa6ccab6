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

A trace is a list of ``(id, size)`` pairs: ``size >= 0`` allocates ``size`` bytes as block
``id``; ``size < 0`` frees block ``id``. ``mark`` in ``replay`` names the position from which the
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
    """The allocator could not serve a request within the card's capacity."""


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


class _Block:
    __slots__ = ("addr", "size", "free", "prev", "next", "small")

    def __init__(self, addr, size, small, prev=None, next=None):
        self.addr, self.size, self.small = addr, size, small
        self.free, self.prev, self.next = True, prev, next


@dataclass
class Replay:
    """What a replay ended with: peaks and counts, in bytes."""

    max_allocated: int
    max_reserved: int
    allocated: int
    reserved: int
    segments: int
    retries: int  # times cached segments were released to make room (num_alloc_retries)


class CachingAllocator:
    """The allocator's state; ``capacity`` (bytes the driver can give, None: unlimited)."""

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity
        self.pools = ([], [])  # free blocks as (size, addr), sorted: large, small
        self.by_key: dict = {}  # (size, addr) -> free block
        self.allocated = self.reserved = 0
        self.max_allocated = self.max_reserved = 0
        self.segments = 0
        self.retries = 0
        self._next_addr = 0

    # -- pools -------------------------------------------------------------------------------
    def _insert(self, block: _Block) -> None:
        block.free = True
        key = (block.size, block.addr)
        insort(self.pools[block.small], key)
        self.by_key[key] = block

    def _remove(self, block: _Block) -> None:
        key = (block.size, block.addr)
        pool = self.pools[block.small]
        del pool[bisect_left(pool, key)]
        del self.by_key[key]

    # -- the allocator's operations ----------------------------------------------------------
    def malloc(self, size: int) -> _Block:
        size = round_size(size)
        small = size <= SMALL_SIZE
        pool = self.pools[small]
        i = bisect_left(pool, (size, -1))
        if i < len(pool):
            key = pool.pop(i)
            block = self.by_key.pop(key)
        else:
            block = self._new_segment(size, small)
        remaining = block.size - size
        if remaining >= MIN_BLOCK if small else remaining > SMALL_SIZE:
            rest = _Block(block.addr + size, remaining, small, block, block.next)
            if block.next is not None:
                block.next.prev = rest
            block.next = rest
            block.size = size
            self._insert(rest)
        block.free = False
        self.allocated += block.size
        if self.allocated > self.max_allocated:
            self.max_allocated = self.allocated
        return block

    def _new_segment(self, size: int, small: bool) -> _Block:
        total = segment_size(size)
        if self.capacity is not None and self.reserved + total > self.capacity:
            self.release_cached()
            self.retries += 1
            if self.reserved + total > self.capacity:
                raise OutOfMemory(f"{size} bytes requested, {self.reserved} reserved, "
                                  f"{self.allocated} allocated, capacity {self.capacity}")
        block = _Block(self._next_addr, total, small)
        self._next_addr += total
        self.segments += 1
        self.reserved += total
        if self.reserved > self.max_reserved:
            self.max_reserved = self.reserved
        return block

    def free(self, block: _Block) -> None:
        self.allocated -= block.size
        prev, nxt = block.prev, block.next
        if prev is not None and prev.free:  # merge with the free block before
            self._remove(prev)
            prev.size += block.size
            prev.next = nxt
            if nxt is not None:
                nxt.prev = prev
            block = prev
        if nxt is not None and nxt.free:  # and the one after
            self._remove(nxt)
            block.size += nxt.size
            block.next = nxt.next
            if nxt.next is not None:
                nxt.next.prev = block
        self._insert(block)

    def release_cached(self) -> None:
        """``release_cached_blocks``: every free block that is a whole segment goes back."""
        for pool in self.pools:
            keep = []
            for key in pool:
                block = self.by_key[key]
                if block.prev is None and block.next is None:
                    del self.by_key[key]
                    self.reserved -= block.size
                    self.segments -= 1
                else:
                    keep.append(key)
            pool[:] = keep

    def state(self) -> Replay:
        return Replay(self.max_allocated, self.max_reserved, self.allocated, self.reserved,
                      self.segments, self.retries)


def replay(trace, capacity: int | None = None, mark: int = 0) -> Replay:
    """Runs ``trace`` (``(id, size)`` pairs, see the module's docstring) through a fresh
    allocator; raises ``OutOfMemory`` where a request cannot be served within ``capacity``.
    The peaks count from position ``mark`` on, starting from what is allocated and reserved
    there, as ``torch.cuda.reset_peak_memory_stats`` called at ``mark`` leaves them."""
    alloc = CachingAllocator(capacity)
    live: dict = {}
    malloc, free = alloc.malloc, alloc.free
    n = -1
    for n, (key, size) in enumerate(trace):
        if n == mark:
            alloc.max_allocated, alloc.max_reserved = alloc.allocated, alloc.reserved
        if size >= 0:
            live[key] = malloc(size)
        else:
            block = live.pop(key, None)
            if block is not None:
                free(block)
    if mark > n:  # at the end
        alloc.max_allocated, alloc.max_reserved = alloc.allocated, alloc.reserved
    return alloc.state()


def fits(trace, capacity: int, mark: int = 0) -> bool:
    """Whether ``trace`` runs within ``capacity`` bytes of device memory."""
    try:
        replay(trace, capacity, mark)
    except OutOfMemory:
        return False
    return True
