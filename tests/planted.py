"""Jobs planted in the worker pool by tests/test_cli.py (importable by spawned workers)."""

import os
import time


def job(entry, *args):
    if entry.arch == "raises":
        raise ValueError("planted failure")
    if entry.arch == "exits":
        os._exit(3)
    if entry.arch == "killed":
        os.kill(os.getpid(), 9)
    if entry.arch == "hangs":
        time.sleep(600)
    return {"arch": entry.arch, "pid": os.getpid()}
