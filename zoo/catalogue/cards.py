"""GPU memory sizes the memory stage answers for, and what a program cannot use of a card."""

# Card sizes in GB as sold (8 GB consumer cards up to the 141 GB H200); each is a
# max_batch_<N>gb column of data/memory.csv.
GPU_GB = [8, 12, 16, 24, 32, 40, 48, 80, 96, 141]
# What a program cannot use of a card: the CUDA context (not seen by max_memory_allocated) and
# headroom for the caching allocator's rounding to segments and fragmentation.
CONTEXT_BYTES = 512 * 2**20
ALLOCATOR_HEADROOM = 0.05


def usable_bytes(gpu_gb: float) -> int:
    """Bytes a step may peak at on a card sold as ``gpu_gb`` GB (taken as GiB of device memory)."""
    return int((gpu_gb * 2**30 - CONTEXT_BYTES) * (1 - ALLOCATOR_HEADROOM))
