"""Real GPUs (``gpus.csv``): memory as the driver reports it, compute capability, the source of
each figure; and what of a card a training step cannot use.

Three figures per card, in MiB:

- ``memory_mib``: the total ``nvidia-smi`` shows: an "80 GB" H100 81,559 MiB, a "24 GB" RTX
  4090 24,564 MiB;
- ``cuda_total_mib``: what CUDA, and so ``torch.cuda.mem_get_info``, reports as total: the
  above less what current drivers keep for themselves (``nvidia-smi -q`` shows it as
  "Reserved": 422 MiB on an RTX 3090, 454 on an H100, 763 on an A100 80GB in the sources of
  ``gpus.csv``). Where no source gives it, ``DRIVER_RESERVED_MIB`` is assumed;
- ``capacity``: what the caching allocator may reserve, the CUDA total less the CUDA context
  (the driver's and the kernels' own memory, which no allocator statistic sees).
"""

from __future__ import annotations

import csv
import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import UsageError

CARDS_CSV = Path(__file__).with_name("gpus.csv")
MiB = 1 << 20

# The CUDA context of a PyTorch process with lazy module loading (the default since torch 1.13
# and CUDA 11.7), with the cuBLAS and cuDNN handles a step creates: an assumption until
# scripts/gpu-check has measured it on a card (data/memory-measured.csv records it per card).
CONTEXT_MIB = 512
CONTEXT_SOURCE = (
    "assumed: 273.75 MiB after creating one tensor with lazy loading "
    "(https://github.com/pytorch/pytorch/pull/86509), 'around 400MB' by a PyTorch maintainer "
    "(https://github.com/pytorch/pytorch/issues/109888); the context grows as kernels and the "
    "cuBLAS and cuDNN libraries are first used, so 512 MiB is taken")
# What the driver keeps of a card where gpus.csv has no CUDA total (the sources: 250-763 MiB)
DRIVER_RESERVED_MIB = 512


@dataclass(frozen=True)
class Card:
    name: str
    memory_mib: int  # as nvidia-smi shows it
    capability: str  # compute capability, "9.0"; "" for a size given by hand
    memory_source: str = ""
    capability_source: str = ""
    cuda_total_mib: int | None = None  # as CUDA reports it; None: memory_mib - DRIVER_RESERVED_MIB
    cuda_total_source: str = ""

    @property
    def slug(self) -> str:
        """The card as a column name: ``rtx_4090``, ``a100_80gb``."""
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower().removeprefix("nvidia ")).strip("_")

    @property
    def cuda_total(self) -> int:
        """Bytes CUDA reports as the card's total (``torch.cuda.mem_get_info()[1]``)."""
        mib = self.cuda_total_mib if self.cuda_total_mib else self.memory_mib - DRIVER_RESERVED_MIB
        return mib * MiB

    @property
    def cublas_workspace(self) -> int:
        """torch's default cuBLAS workspace on this card (``CUBLAS_WORKSPACE_CONFIG`` unset),
        allocated through the caching allocator once per thread that runs a matrix product:
        32 MiB on compute capability 9.0 (Hopper), 8 MiB + 128 KiB (``:4096:2:16:8``) on others,
        in torch 2.11 (aten/src/ATen/cuda/CublasHandlePool.cpp, parseChosenWorkspaceSize; from
        torch 2.12, 32 MiB on 10.x and 12.x too). A size given by hand: the larger."""
        if self.capability in ("9.0", ""):
            return 32 * MiB
        return 4096 * 1024 * 2 + 16 * 1024 * 8

    @property
    def capacity(self) -> int:
        """Bytes the caching allocator may reserve: the CUDA total less the CUDA context."""
        return self.cuda_total - CONTEXT_MIB * MiB


def load(path: Path = CARDS_CSV) -> list[Card]:
    with open(path, newline="") as fh:
        return [Card(r["name"], int(r["memory_mib"]), r["compute_capability"],
                     r["memory_source"], r["capability_source"],
                     int(r["cuda_total_mib"]) if r["cuda_total_mib"] else None,
                     r["cuda_total_source"]) for r in csv.DictReader(fh)]


CARDS = load()
BY_SLUG = {c.slug: c for c in CARDS}
# The cards whose largest batch is a column of data/memory-fit.csv (max_batch_<slug>); any card
# of the table, or a size, is answered by ``zoo memory MODEL --gpu CARD``.
FIT_CARDS = [BY_SLUG[s] for s in ("rtx_3060_12gb", "t4", "rtx_4090", "rtx_5090", "a100_40gb",
                                  "h100", "h200", "b200")]

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(gb|gib|mib|mb)\s*", re.IGNORECASE)
_UNIT = {"gb": 10**9, "gib": 2**30, "mb": 10**6, "mib": 2**20}


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower().removeprefix("nvidia").removeprefix("geforce"))


def find(text: str) -> Card:
    """A card of the table by its name (any case, spaces and dashes ignored: ``h100``,
    ``RTX-4090``), or a size (``24GB`` = 24 x 10^9 bytes, ``24GiB``, ``24564MiB``) taken as the
    total nvidia-smi shows. Anything else: a ``UsageError`` naming the close names."""
    by_key = {_key(c.name): c for c in CARDS} | {_key(c.slug): c for c in CARDS}
    card = by_key.get(_key(text))
    if card is not None:
        return card
    m = _SIZE.fullmatch(text)
    if m:
        mib = int(float(m.group(1)) * _UNIT[m.group(2).lower()] // MiB)
        card = Card(text.strip(), mib, "")
        if card.capacity <= 0:
            raise UsageError(f"--gpu {text!r}: no larger than the {CONTEXT_MIB + DRIVER_RESERVED_MIB}"
                             " MiB the driver and the CUDA context take")
        if mib > 10**7:
            raise UsageError(f"--gpu {text!r}: larger than any card")
        return card
    close = difflib.get_close_matches(_key(text), list(by_key), n=3, cutoff=0.5)
    names = sorted({by_key[k].name for k in close})
    hint = f"; did you mean {', '.join(names)}?" if names else ""
    raise UsageError(f"--gpu {text!r}: not a card of the table nor a size such as 24GB{hint} "
                     f"(cards: {', '.join(c.name for c in CARDS)})")
