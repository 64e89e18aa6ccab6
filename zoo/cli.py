"""The ``zoo`` command: ``zoo list``, ``zoo count``, ``zoo predict``, ``zoo memory``, ``zoo site``."""

from __future__ import annotations

import argparse
import subprocess
import sys

from zoo.catalogue import UnknownModel, select


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list the models a selection names")
    ls.add_argument("models", nargs="*", default=["default"],
                    help="names, globs ('resnet*'), library:name, or a set (default, survey, "
                         "bench, torchvision, timm)")

    count = sub.add_parser("count", help="count params, MACs and training FLOPs into data/")
    count.add_argument("models", nargs="*", default=["default"], help="as for 'zoo list'")
    count.add_argument("--data", default=None, help="output folder (default: the repo's data/)")
    count.add_argument("--timm-results", default=None,
                       help="path or URL of timm's results-imagenet.csv")
    pred = sub.add_parser("predict", help="predict memory (all batch sizes, optimizers, "
                                         "precisions) into data/memory*.csv")
    pred.add_argument("models", nargs="*", default=["default"], help="as for 'zoo list'")
    pred.add_argument("--data", default=None, help="output folder (default: the repo's data/)")

    mem = sub.add_parser("memory", help="predict the GPU memory of one model's training step or "
                                           "inference, without a GPU")
    mem.add_argument("model", help="a zoo model (as for 'zoo list'; the first match is used) or "
                                   "your own builder as 'package.module:function'")
    mem.add_argument("--batch", type=int, default=32)
    mem.add_argument("--optimizer", default="adamw", help="sgd, momentum or adamw")
    mem.add_argument("--precision", default="fp32",
                     help="fp32, amp (= fp16 autocast), fp16 or bf16 (autocast)")
    mem.add_argument("--mode", default="training", choices=["training", "inference"])
    mem.add_argument("--gpu", default="24GB", help="card size, e.g. 24GB or 80")
    mem.add_argument("--input", default=None,
                     help="input shape without the batch, e.g. 3x512x512 (default: the zoo "
                          "model's own; required for your own model)")

    site = sub.add_parser("site", help="build the static site from data/ into public/")
    site.add_argument("--data", default=None, help="input folder (default: the repo's data/)")
    site.add_argument("--no-build", action="store_true",
                      help="only generate the pages (build/docs), do not run mkdocs")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "site":
        from zoo import site
        from zoo.tables import DATA

        try:
            (site.generate if args.no_build else site.build)(args.data or DATA)
        except (FileNotFoundError, KeyError, subprocess.CalledProcessError) as exc:
            print(f"zoo: error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "memory":
        from zoo.memory_cli import main as memory_main

        return memory_main(args)
    try:
        entries = select(args.models)
    except UnknownModel as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "list":
        for e in entries:
            print(f"{e.library:12} {e.name:55} {e.img_size:4d}  {e.family}")
        return 0
    if args.command == "count":
        from zoo import counts
        from zoo.tables import DATA

        summary = counts.run(entries, args.data or DATA, args.timm_results)
        return 0 if summary["counted"] else 1
    if args.command == "predict":
        from zoo import memory_stage
        from zoo.tables import DATA

        summary = memory_stage.run(entries, args.data or DATA)
        return 0 if summary["failed"] < summary["models"] else 1
    return 2
