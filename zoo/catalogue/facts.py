"""What the libraries themselves say about each weight: its licence and its paper, with sources.

Never guessed; empty where the library says nothing.

- Licence. timm: the tag's pretrained config (``license``: an SPDX-style id such as ``apache-2.0``,
  or the name of a model's own licence); ``unknown`` where timm says so. torchvision: the weight's
  ``meta["license"]`` where it has one (the SWAG weights: CC-BY-NC-4.0), else torchvision's own
  BSD-3-Clause, under which it distributes its weights (its README adds that weights may carry
  terms from the data they were trained on). An architecture without pretrained weights has none.
- Paper (an arXiv id, ``arXiv:NNNN.NNNNN``). timm: the tag's ``paper_ids`` where it has them; else
  the arXiv link in the model's own docstring; else the paper the zoo's table of families names
  (``reference/papers.csv``, each id one that timm's or torchvision's source of that family cites);
  else the one arXiv link of the model's module, where it cites just one. torchvision: the arXiv
  link of the model builder's docstring.
"""

from __future__ import annotations

import csv
import functools
import inspect
import re
import sys

from zoo.catalogue import reference
from zoo.catalogue.entries import Entry

ARXIV = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", re.I)
SWAG_LICENSE = "https://github.com/facebookresearch/SWAG/blob/main/LICENSE"
NONE = {"license": "", "license_source": "", "paper": "", "paper_source": ""}


def facts(entry: Entry) -> dict:
    """``license``, ``license_source``, ``paper`` and ``paper_source`` of one weight."""
    if entry.library == "timm":
        return {**_timm_license(entry), **_timm_paper(entry)}
    if entry.library == "torchvision":
        return {**_torchvision_license(entry), **_torchvision_paper(entry)}
    return dict(NONE)


def _timm_cfg(entry: Entry):
    from timm.models import get_pretrained_cfg

    if not entry.weights or entry.weights == "untrained":
        return None
    return get_pretrained_cfg(f"{entry.arch}.{entry.weights}")


def _timm_license(entry: Entry) -> dict:
    import timm

    cfg = _timm_cfg(entry)
    if cfg is None:
        return {"license": "", "license_source": "no pretrained weights"}
    if not cfg.license:
        return {"license": "", "license_source": f"timm {timm.__version__}: none given"}
    return {"license": str(cfg.license).lower(),
            "license_source": f"timm {timm.__version__} pretrained config"}


def _torchvision_license(entry: Entry) -> dict:
    import torchvision
    from torchvision.models import get_model_weights

    meta = get_model_weights(entry.arch)[entry.weights].meta
    if meta.get("license") == SWAG_LICENSE:
        return {"license": "cc-by-nc-4.0", "license_source": SWAG_LICENSE}
    if meta.get("license"):
        return {"license": "", "license_source": meta["license"]}
    return {"license": "bsd-3-clause",
            "license_source": f"torchvision {torchvision.__version__} (its licence; its README: "
                              "weights may carry terms of the data they were trained on)"}


def _arxiv(ids: str) -> str:
    return f"arXiv:{ids}"


def _timm_paper(entry: Entry) -> dict:
    import timm
    from timm.models import _registry

    cfg = _timm_cfg(entry)
    if cfg is not None and cfg.paper_ids:
        found = re.findall(r"\d{4}\.\d{4,5}", str(cfg.paper_ids))
        if found:
            return {"paper": _arxiv(found[0]),
                    "paper_source": f"timm {timm.__version__} pretrained config"}
    fn = _registry._model_entrypoints.get(entry.arch)
    own = ARXIV.findall(inspect.getdoc(fn) or "") if fn else []
    if own:
        return {"paper": _arxiv(own[0]), "paper_source": f"timm {timm.__version__} model docstring"}
    family = family_papers().get(entry.family)
    if family:
        return {"paper": family, "paper_source": "zoo's table of families (reference/papers.csv)"}
    cited = set(ARXIV.findall(sys.modules[fn.__module__].__doc__ or "")) if fn else set()
    if len(cited) == 1:
        return {"paper": _arxiv(cited.pop()),
                "paper_source": f"timm {timm.__version__} module docstring"}
    return {"paper": "", "paper_source": ""}


def _torchvision_paper(entry: Entry) -> dict:
    import torchvision
    from torchvision.models import get_model_builder

    found = ARXIV.findall(inspect.getdoc(get_model_builder(entry.arch)) or "")
    if not found:
        return {"paper": "", "paper_source": ""}
    return {"paper": _arxiv(found[0]),
            "paper_source": f"torchvision {torchvision.__version__} model docstring"}


@functools.cache
def family_papers() -> dict[str, str]:
    """family -> arXiv id, from ``reference/papers.csv`` (empty if the table is absent)."""
    try:
        path = reference.path(reference.PAPERS)
    except (AttributeError, KeyError, FileNotFoundError):
        return {}
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {row["family"]: row["paper"] for row in csv.DictReader(fh) if row["paper"]}
