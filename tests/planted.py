"""Jobs planted in the worker pool by tests/test_cli.py (importable by spawned workers)."""

import os
import time

_PINNED = []


def resident_mib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("VmRSS:"))


def _mapped_bytes() -> int:
    """Bytes glibc's malloc holds in blocks with mappings of their own (mallinfo2's hblkhd)."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2().hblkhd


def job(entry, *args):
    if entry.arch == "holds":  # 400 MiB of small heap blocks, freed, with a survivor above them
        chunks = [bytearray(4000) for _ in range(100_000)]
        _PINNED.append(bytearray(4000))
        held = resident_mib()
        del chunks
        return {"arch": entry.arch, "pid": os.getpid(), "held_mib": held}
    if entry.arch == "frees-big":  # a 24 MiB block freed: glibc's default would now keep
        big = bytearray(24 * 2**20)  # blocks up to 24 MiB on its heap
        del big
        return {"arch": entry.arch, "pid": os.getpid()}
    if entry.arch == "maps-16mib":  # does a 16 MiB block get a mapping of its own?
        before = _mapped_bytes()
        block = bytearray(16 * 2**20)
        after = _mapped_bytes()
        del block
        return {"arch": entry.arch, "pid": os.getpid(),
                "own_mapping": after - before >= 16 * 2**20}
    if entry.arch == "small":
        return {"arch": entry.arch, "pid": os.getpid(), "resident_mib": resident_mib()}
    if entry.arch == "raises":
        raise ValueError("planted failure")
    if entry.arch == "exits":
        os._exit(3)
    if entry.arch == "killed":
        os.kill(os.getpid(), 9)
    if entry.arch == "hangs":
        time.sleep(600)
    return {"arch": entry.arch, "pid": os.getpid()}


def measure(entry, settings):
    """A stage's measure with planted failures: rows in counts.csv when it succeeds."""
    if entry.arch == "allocates":  # past the test's limit, 64 MiB at a time (the watchdog
        hog = [bytearray(64 * 2**20) for _ in range(48)]  # runs between two allocations)
        del hog
    job(entry)
    return {"counts.csv": [{"library": entry.library, "arch": entry.arch, "weights": entry.weights,
                            "img_size": entry.img_size, "family": "planted", "params": len(entry.arch),
                            "gmacs": settings.get("gmacs", 1.0)}]}


def _stage():
    from zoo.stages.base import Stage

    return Stage(module="planted", name="planted", tables=("counts.csv", "failures.csv"),
                 measure=measure, code=("planted",), status=lambda r: "ok")


STAGE = _stage()
