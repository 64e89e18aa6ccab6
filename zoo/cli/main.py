"""The ``zoo`` command: ``zoo list``, ``zoo count``, ``zoo predict``, ``zoo time``, ``zoo memory``,
``zoo latency``, ``zoo site``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from zoo.catalogue.entries import is_user_model, select, user_model
from zoo.errors import UsageError
from zoo.measure.latency import BATCHES, BUDGET

DEFAULT_TIMEOUT_S = 1800.0  # one model's wall-clock limit in a sweep
DEFAULT_MEMORY_GB = 8.0  # one model process's resident-memory limit


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, as every other bad input gets
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zoo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ls = sub.add_parser("list", help="list the models a selection names")
    ls.add_argument("models", nargs="*", default=["default"],
                    help="names, globs ('resnet*'), library:name, or a set (default, survey, "
                         "bench, torchvision, timm)")

    for name, what in [("count", "count params, MACs and training FLOPs into data/"),
                       ("predict", "predict memory (all batch sizes, optimizers, precisions) "
                                   "into data/memory*.csv")]:
        stage = sub.add_parser(name, help=what)
        stage.add_argument("models", nargs="*", default=["default"],
                           help="as for 'zoo list', or your own model as "
                                "'package.module:function' (printed, with --input)")
        stage.add_argument("--data", default=None, help="output folder (default: ./data)")
        stage.add_argument("--input", default=None,
                           help="your own model's input shape without the batch, e.g. 3x512x512")
        stage.add_argument("--workers", type=int, default=None,
                           help="worker processes (default: one per core; 1 runs in this process)")
        stage.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                           help=f"seconds one model may take (default {DEFAULT_TIMEOUT_S:g})")
        stage.add_argument("--memory-limit", type=float, default=DEFAULT_MEMORY_GB,
                           help=f"GiB one model's process may hold (default {DEFAULT_MEMORY_GB:g})")
        stage.add_argument("--scheduler", default=None,
                           help="run on a Dask cluster: its scheduler's address, e.g. "
                                "tcp://HOST:8786 (default: worker processes on this machine)")
        if name == "count":
            stage.add_argument("--timm-results", default=None,
                               help="path or URL of a copy of timm's results-imagenet.csv "
                                    "(default: the one kept in zoo/catalogue/reference/)")

    tm = sub.add_parser("time", help="time inference against batch size on this CPU, one model "
                                      "at a time, into data/latency.csv")
    tm.add_argument("models", nargs="*", default=["default"], help="as for 'zoo list'")
    tm.add_argument("--data", default=None, help="output folder (default: ./data)")
    _timing_options(tm, default_batch=",".join(map(str, BATCHES)))
    tm.add_argument("--budget", type=float, default=BUDGET,
                    help=f"seconds of timing per model; larger batch sizes that would pass it are "
                         f"recorded as skipped (default {BUDGET:g})")
    tm.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                    help=f"seconds one model may take (default {DEFAULT_TIMEOUT_S:g})")
    tm.add_argument("--memory-limit", type=float, default=DEFAULT_MEMORY_GB,
                    help=f"GiB the timing process may hold (default {DEFAULT_MEMORY_GB:g})")

    lat = sub.add_parser("latency", help="time one model's inference against batch size "
                                         "(printed, not written to data/)")
    lat.add_argument("model", help="a zoo model (as for 'zoo list'; a bare architecture takes the "
                                   "library's default weights) or your own builder as "
                                   "'package.module:function'")
    _timing_options(lat, default_batch="1,8,32")
    lat.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    lat.add_argument("--precision", default="fp32", help="fp32 or bf16 (autocast)")
    lat.add_argument("--channels-last", action="store_true", help="channels-last memory layout")
    lat.add_argument("--budget", type=float, default=BUDGET,
                     help=f"seconds of timing (default {BUDGET:g})")
    lat.add_argument("--input", default=None,
                     help="input shape without the batch, e.g. 3x512x512 (default: the zoo "
                          "model's own; required for your own model)")

    mem = sub.add_parser("memory", help="predict the GPU memory of one model's training step or "
                                           "inference, without a GPU")
    mem.add_argument("model", help="a zoo model (as for 'zoo list'; a bare architecture takes the "
                                   "library's default weights) or "
                                   "your own builder as 'package.module:function'")
    mem.add_argument("--batch", type=int, default=32)
    mem.add_argument("--optimizer", default="adamw", help="sgd, momentum or adamw")
    mem.add_argument("--precision", default="fp32",
                     help="fp32; amp-fp16 or amp-bf16 (fp32 weights under autocast; amp = "
                          "amp-fp16); fp16 or bf16 (the weights themselves in half precision, "
                          "inference only)")
    mem.add_argument("--mode", default="training", choices=["training", "inference"])
    mem.add_argument("--gpu", default="RTX 4090",
                     help="a card (RTX 3060 12GB, RTX 4090, A100 40GB, H100, H200, B200, ...: "
                          "see the memory page) or its total as nvidia-smi shows it (24564MiB, "
                          "24GiB, 24GB = 24 x 10^9 bytes)")
    mem.add_argument("--input", default=None,
                     help="input shape without the batch, e.g. 3x512x512 (default: the zoo "
                          "model's own; required for your own model)")

    site = sub.add_parser("site", help="build the static site from data/ into public/")
    site.add_argument("--data", default=None, help="input folder (default: ./data)")
    site.add_argument("--out", default=None,
                      help="the folder to write build/docs and public/ in (default: the current "
                           "folder)")
    site.add_argument("--no-build", action="store_true",
                      help="only generate the pages (build/docs), do not run mkdocs")
    return p


def _timing_options(p, default_batch: str) -> None:
    p.add_argument("--batch", default=default_batch,
                   help=f"batch sizes, comma-separated (default {default_batch})")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: every core this process may use)")


def main(argv=None) -> int:
    """Runs a command; bad input or a bad data file is one line and exit 2, Ctrl-C one line and
    exit 130 (every worker stopped, ``data/`` as a finished commit left it)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (zoo list | head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run(args) -> int:

    if args.command == "site":
        try:
            from zoo.report import build as site
        except ImportError as exc:
            raise UsageError(f"zoo site needs the site extra ({exc.name} is missing): "
                             "pip install 'zoo[site]'") from None
        try:
            if args.no_build:
                site.generate(args.data, site.docs_dir(args.out))
            else:
                site.build(args.data, args.out)
        except subprocess.CalledProcessError as exc:
            print(f"zoo: error: mkdocs failed ({exc})", file=sys.stderr)
            return 1
        return 0
    if args.command == "memory":
        from zoo.cli.memory import main as memory_main

        return memory_main(args)
    if args.command == "latency":
        from zoo.cli.latency import main as latency_main

        return latency_main(args)
    if args.command in ("count", "predict") and any(map(is_user_model, args.models)):
        return _user_model(args)
    if getattr(args, "input", None):
        raise UsageError("--input is for your own model (package.module:function); a zoo model "
                         "runs at its own input size")
    entries = select(args.models)
    if args.command == "list":
        for e in entries:
            print(f"{e.library:12} {e.name:55} {e.img_size:4d}  {e.family}")
        return 0
    if args.command == "time":
        from zoo.cli.latency import timing_settings
        from zoo.stages import latency as latency_stage

        how = _how(args)
        summary = latency_stage.run(entries, args.data, how=timing_settings(args),
                                    timeout=how["timeout"], memory_limit=how["memory_limit"])
        return 0 if summary["failed"] < summary["models"] else 1
    how = _how(args)
    if args.command == "count":
        from zoo.stages import counts

        summary = counts.run(entries, args.data, args.timm_results, **how)
    else:
        from zoo.stages import memory as memory_stage

        summary = memory_stage.run(entries, args.data, **how)
    return 0 if summary["failed"] < summary["models"] else 1


def _how(args) -> dict:
    """How a stage runs: workers, limits, where; checked before anything runs."""
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: must be at least 1")
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    if not args.memory_limit > 0:
        raise UsageError(f"--memory-limit {args.memory_limit:g}: must be a positive number of GiB")
    return {"workers": getattr(args, "workers", None), "timeout": args.timeout,
            "memory_limit": args.memory_limit * 2**30, "scheduler": getattr(args, "scheduler", None)}


def _user_model(args) -> int:
    """``zoo count`` / ``zoo predict`` of the user's own model: printed, not written to data/."""
    from zoo.catalogue.build import input_shape
    from zoo.stages.run import error_line

    if len(args.models) != 1:
        raise UsageError("your own model (package.module:function) is counted alone: name only it")
    entry = user_model(args.models[0], args.input)
    if args.data:
        raise UsageError("--data: your own model is printed, not written to a data folder")
    try:
        if args.command == "count":
            from zoo.stages import counts

            counts.print_model(entry)
        else:
            from zoo.stages import memory as memory_stage

            memory_stage.print_model(entry)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{entry.arch}: failed on input {'x'.join(map(str, input_shape(entry)))}: "
                         f"{error_line(exc)}") from None
    return 0
