"""The package's layout holds: imports point down the pipeline, and torch's private API is used in
one module only. Read from the source with ``ast``, so a function-level import counts too."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "zoo"

# What each part may import of zoo (itself included). Arrows point down: cli -> report, stages ->
# measure -> catalogue -> store -> errors; torch_private imports nothing of zoo.
MAY_IMPORT = {
    "errors": set(),
    "torch_private": set(),
    "store": {"store", "errors"},
    "catalogue": {"catalogue", "store", "errors", "torch_private"},
    "measure": {"measure", "catalogue", "store", "errors", "torch_private"},
    "stages": {"stages", "measure", "catalogue", "store", "errors", "torch_private"},
    "report": {"report", "catalogue", "store", "errors"},
    "cli": {"cli", "report", "stages", "measure", "catalogue", "store", "errors"},
}
NO_TORCH = {"store", "report", "errors"}  # read and write data/ without importing torch


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("__init__.py", "__main__.py"):
            continue
        part = rel.parts[0].removesuffix(".py")
        yield part, rel, ast.parse(path.read_text(), str(path))


def _imported(tree) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "zoo":
                names += [f"zoo.{a.name}" for a in node.names]
    return names


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _private_torch(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "torch" and any(p.startswith("_") and not p.startswith("__")
                                       for p in parts[1:])


def test_every_part_of_the_package_is_known():
    assert {part for part, _, _ in _modules()} == set(MAY_IMPORT)


@pytest.mark.parametrize("part, rel, tree", list(_modules()), ids=lambda v: str(v))
def test_imports_point_down_the_pipeline(part, rel, tree):
    for name in _imported(tree):
        if name.startswith("zoo."):
            target = name.split(".")[1]
            assert target in MAY_IMPORT[part], f"zoo/{rel} imports {name}: {part} may not use {target}"
        if part in NO_TORCH:
            assert name.split(".")[0] not in ("torch", "torchvision", "timm"), \
                f"zoo/{rel} imports {name}"


@pytest.mark.parametrize("part, rel, tree", list(_modules()), ids=lambda v: str(v))
def test_torch_private_api_is_used_in_one_module(part, rel, tree):
    if part == "torch_private":
        return
    used = [n for n in _imported(tree) if _private_torch(n)]
    used += [d for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             for d in [_dotted(node)] if d and _private_torch(d)]
    used += [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and _private_torch(node.value) and " " not in node.value]
    assert not used, f"zoo/{rel} uses torch's private API: {sorted(set(used))}"


def test_the_checks_see_a_private_use():
    tree = ast.parse("import torch\nx = torch._C.DispatchKey\nfrom torch.utils._pytree import tree_map\n")
    assert [d for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            for d in [_dotted(node)] if d and _private_torch(d)]
    assert any(_private_torch(n) for n in _imported(tree))
