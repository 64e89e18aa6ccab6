"""What the libraries themselves say about each weight: its licence and its paper, with sources,
and for torchvision's weights the link to their training recipe (``meta["recipe"]``).

Never guessed; empty where the library says nothing.

- Licence. timm: the tag's pretrained config (``license``: an SPDX-style id such as ``apache-2.0``,
  or the name of a model's own licence); ``unknown`` where timm says so. torchvision: the weight's
  ``meta["license"]`` where it has one (the SWAG weights: CC-BY-NC-4.0), else torchvision's own
  BSD-3-Clause, under which it distributes its weights (its README adds that weights may carry
  terms from the data they were trained on). An architecture without pretrained weights has none.
- Paper (an arXiv id, ``arXiv:NNNN.NNNNN``). timm, in this order: the tag's ``paper_ids`` where it
  has them; else the arXiv link in the model's own docstring; else the paper of the row of the zoo's
  families table (``zoo/catalogue/families.csv``) that the architecture's name matches, where the
  row names one (each such id is cited by the docstring of the timm module that defines every
  architecture the row matches, or of its entrypoint: ``tests/test_families.py`` checks this);
  else the one arXiv link of the model's module, where it cites just one. torchvision: the arXiv
  link of the model builder's docstring.
"""

from __future__ import annotations

import inspect
import re
import sys

from zoo.catalogue.entries import Entry, Family, family_row

ARXIV = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", re.I)
SWAG_LICENSE = "https://github.com/facebookresearch/SWAG/blob/main/LICENSE"
NONE = {"license": "", "license_source": "", "paper": "", "paper_source": "", "recipe": ""}


def facts(entry: Entry) -> dict:
    """``license``, ``license_source``, ``paper``, ``paper_source`` and ``recipe`` (the training
    recipe's link, which torchvision gives for each weight) of one weight."""
    if entry.library == "timm":
        return {**_timm_license(entry), **_timm_paper(entry), "recipe": ""}
    if entry.library == "torchvision":
        from torchvision.models import get_model_weights

        meta = get_model_weights(entry.arch)[entry.weights].meta
        return {**_torchvision_license(meta), **_torchvision_paper(entry),
                "recipe": meta.get("recipe", "")}
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


def _torchvision_license(meta: dict) -> dict:
    """From a torchvision weight's ``meta``."""
    import torchvision

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
    row = table_paper(entry.arch)
    if row is not None:
        modules = row.cited_in.split()
        cited_by = [fn.__module__] if fn and fn.__module__ in modules else modules
        return {"paper": row.paper,
                "paper_source": "zoo's families table (zoo/catalogue/families.csv; "
                                f"cited by {', '.join(cited_by)})"}
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


def table_paper(arch: str) -> Family | None:
    """The row of the families table that ``arch`` matches, where that row names a paper."""
    row = family_row(arch)
    return row if row is not None and row.paper else None
