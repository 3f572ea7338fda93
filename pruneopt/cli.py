"""The ``pruneopt`` command line.

    pruneopt solve FILE --solver NAME [--time-limit S] [--json] [--save-solution OUT.npz]
    pruneopt crosscheck FILE --solvers a,b,c [--time-limit S] [--json | --csv OUT]
    pruneopt generate joint --layers L --items P [--dist NAME] [--shape NAME] --seed S --out FILE
    pruneopt generate joint-qp --model digits-mlp|digits-cnn [--layers A,B] [--items P]
                      [--calibration N] [--block-size B] --seed S --out FILE
    pruneopt export FILE --format lp|mps --out F
    pruneopt solvers [FILE]
    pruneopt report [--out DIR] [--quick]
    pruneopt prune --model M --flops F [--nnz N] --method NAME [--out DIR] [--json]
    pruneopt channels --model M --flops F --solver NAME [--json] [--out DIR]
    pruneopt allocate (--model M | --table CSV) --flops F [--nnz N] --solver NAME [--json]

Bad input (a malformed file, an unknown solver, a budget out of range, an output path that
cannot be written) prints one line ``pruneopt: error: <field>: <what is wrong>`` on stderr and
exits with code 2, writing nothing. Every output path (``--out``, ``--csv``, ``--save-solution``)
is checked before any work starts (:func:`pruneopt.formulations.files.check_output_file` /
``check_output_dir``). A run that fails its own checks, or an I/O error after the checks, is one
line and exit code 1; ``crosscheck`` exits with 3 when a verdict flags a bug. A closed stdout
(``pruneopt ... | head``) ends the command quietly (exit code 1).

The command line parses, calls and prints; it does no library work and never imports torch.
This module holds the parser and the commands on exchange files (solve, crosscheck, generate,
export, solvers, report); ``cli_prune``, ``cli_channels``, ``cli_allocate`` and ``cli_sweep``
add one subcommand each, and their handlers import the pipelines
(:mod:`pruneopt.models.workflows`, which writes ``--out DIR``) or the sweep engine only when
they run. Value types are in ``cli_types``, record printing in ``cli_output``; every file a
command writes goes through :func:`pruneopt.formulations.files.atomic_write`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import re
import shutil
import sys
import tempfile

import numpy as np

from pruneopt.cli_types import positive_float, positive_int
from pruneopt.formulations.checks import fraction
from pruneopt.formulations.files import atomic_write, check_output_dir, check_output_file


class InputError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def _fail(msg: str) -> int:
    print(f"pruneopt: error: {msg}", file=sys.stderr)
    return 2


def _load(path: str):
    from pruneopt.formulations import load_problem

    return load_problem(path)


_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


def _boolean_options(spec) -> frozenset[str]:
    """The options of a solver that are switches (their default is a bool)."""
    try:
        params = inspect.signature(spec.run).parameters
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(name for name in spec.options
                     if name in params and isinstance(params[name].default, bool))


def _parse_options(pairs: list[str] | None, booleans: frozenset[str] = frozenset()) -> dict:
    """``KEY=VALUE`` pairs: a switch (in ``booleans``) takes true/false/yes/no/1/0 (any case)
    and nothing else; other values are JSON where they parse, else strings."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(f"--option: expected KEY=VALUE, got '{pair}'")
        key, val = pair.split("=", 1)
        if key in booleans:
            word = val.strip().lower()
            if word not in _TRUE | _FALSE:
                raise InputError(f"option: {key} is true or false (or yes/no, 1/0), "
                                 f"got {val!r}")
            out[key] = word in _TRUE
            continue
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def _result_line(r) -> str:
    used = ", ".join(f"{k} {v:.6g}/{r.limits.get(k, math.nan):.6g}" for k, v in r.usage.items())
    return (f"{r.solver}: {r.status}{' (proven)' if r.proven_optimal else ''}  "
            f"objective {r.objective:.12g}  bound {r.bound:.12g}  gap {r.gap:.3g}  "
            f"{r.seconds:.3f}s  [{used}]")


# --------------------------------------------------------------------------------- commands
def cmd_solve(args) -> int:
    from pruneopt.solvers import solve
    from pruneopt.solvers.registry import get_solver

    if args.save_solution:
        check_output_file(args.save_solution, "save_solution")
    problem = _load(args.file)
    options = _parse_options(args.option, _boolean_options(get_solver(problem, args.solver)))
    result = solve(problem, args.solver, time_limit=args.time_limit, **options)
    if args.save_solution:
        if result.x is None:
            raise InputError(f"--save-solution: {args.solver} returned no selection "
                             f"(status {result.status}); nothing written")
        fields = {k: np.array(v) for k, v in result.summary().items()
                  if isinstance(v, int | float | str | bool)}
        atomic_write(args.save_solution,
                     lambda fh: np.savez(fh, **fields, x=result.x.astype(np.uint8)))
    if args.json:
        print(result.to_json())
    else:
        print(_result_line(result))
        if result.message:
            print(f"  {result.message}")
    return 0 if result.status != "error" else 1


def cmd_crosscheck(args) -> int:
    from pruneopt.solvers.crosscheck import any_flag, crosscheck

    if args.csv:
        check_output_file(args.csv, "csv")
    problem = _load(args.file)
    names = [s.strip() for s in args.solvers.split(",") if s.strip()]
    if not names:
        raise InputError("--solvers: give at least one solver name")
    decisions = {}
    for spec in args.decision or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--decision: must be NAME=FILE.npy, got {spec!r}")
        try:
            decisions[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"--decision: cannot read {path}: {exc}") from None
        if name in names:
            raise InputError(f"--decision: {name!r} is also a solver name")
    df = crosscheck(problem, names, time_limit=args.time_limit, decisions=decisions)
    if args.csv:
        atomic_write(args.csv, df.to_csv(index=False))
    if args.json:
        print(json.dumps({"rows": json.loads(df.to_json(orient="records")),
                          "best_feasible": df.attrs["best_feasible"],
                          "best_bound": df.attrs["best_bound"],
                          "flagged": any_flag(df)}))
    elif not args.csv:
        with_cols = ["solver", "status", "proven_optimal", "objective", "bound", "gap",
                     "gap_to_best_bound", "seconds", "verdict"]
        print(df[with_cols].to_string(index=False))
    return 3 if any_flag(df) else 0


def cmd_generate(args) -> int:
    check_output_file(args.out, "out")
    if args.formulation == "joint-qp":
        # the quadratic model of a trained digits network (torch is imported only here)
        from pruneopt.models.joint_qp_instances import network_problem

        layers = None if args.layers is None else [
            int(s) if s.strip().lstrip("-").isdigit() else s.strip()
            for s in args.layers.split(",")]
        problem = network_problem(args.model or "digits-cnn", layers=layers, items=args.items,
                                  calibration=args.calibration or 128,
                                  block_size=args.block_size,
                                  keep_nnz=args.keep_nnz, keep_flops=args.keep_flops,
                                  seed=args.seed)
    else:
        from pruneopt.formulations.joint.generate import generate_joint

        if args.model is not None or args.calibration is not None or args.block_size is not None:
            raise ValueError("generate: --model, --calibration and --block-size belong to "
                             "joint-qp")
        try:
            n_layers = 8 if args.layers is None else int(args.layers)
        except ValueError:
            raise ValueError(f"layers: joint takes a number of layers, got {args.layers!r}") \
                from None
        problem = generate_joint(layers=n_layers,
                                 items=1000 if args.items is None else args.items,
                                 dist=args.dist, shape=args.shape, keep_nnz=args.keep_nnz,
                                 keep_flops=args.keep_flops, seed=args.seed)
    problem.save(args.out)
    print(f"wrote {args.out}: {problem!r}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    check_output_file(args.out, "out")
    model = _load(args.file).to_pyomo()
    from pyomo.opt import ProblemFormat

    # the enum, not the string "lp": Pyomo warns when the string differs from its own name
    # (cpxlp) of the format it guesses from the scratch file's suffix
    fmt = {"lp": ProblemFormat.cpxlp, "mps": ProblemFormat.mps}[args.format]

    def write(fh) -> None:  # Pyomo writes to a file name: a scratch file, copied into fh
        with tempfile.TemporaryDirectory(prefix="pruneopt-export-") as scratch:
            path = os.path.join(scratch, f"model.{args.format}")
            model.write(path, format=fmt, io_options={"symbolic_solver_labels": True})
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh)

    atomic_write(args.out, write)
    print(f"wrote {args.out} ({args.format})", file=sys.stderr)
    return 0


def cmd_solvers(args) -> int:
    from pruneopt.solvers.registry import solver_specs

    kind = _load(args.file) if args.file else "joint"
    for spec in solver_specs(kind):
        flag = "" if spec.available() else "  (not installed)"
        tag = "exact" if spec.exact else "fast"
        print(f"{spec.name:12s} {tag:5s} {spec.description}{flag}")
    return 0


def cmd_report(args) -> int:
    check_output_dir(args.out, "out")
    from pruneopt.reports.build import build_report

    paths = build_report(args.out, quick=args.quick, seed=args.seed,
                         progress=not args.no_progress, config=args.config, resume=args.resume,
                         workers=args.workers, time_limit=args.time_limit)
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


# --------------------------------------------------------------------------------- parser
def _fraction(text: str) -> float:
    try:
        val = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return fraction(val, None, low_open=False, got=repr(text), error=argparse.ArgumentTypeError)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ``pruneopt: error: <field>: <what>`` (exit 2)."""

    def error(self, message: str):
        match = re.match(r"argument ([-\w/]+)(?:/[-\w]+)*: (.*)", message)
        if match:
            field = match.group(1).split("/")[-1].lstrip("-").replace("-", "_")
            message = f"{field}: {match.group(2)}"
        self.exit(2, f"pruneopt: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from pruneopt.formulations.joint.generate import DISTRIBUTIONS, SHAPES

    parser = _Parser(prog="pruneopt", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("solve", help="solve one instance with one solver")
    p.add_argument("file")
    p.add_argument("--solver", required=True)
    p.add_argument("--time-limit", type=positive_float, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save-solution", metavar="OUT.npz")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="solver option (repeatable), e.g. --option fixing=false")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("crosscheck", help="several solvers side by side, with verdicts")
    p.add_argument("file")
    p.add_argument("--solvers", required=True, help="comma-separated solver names")
    p.add_argument("--decision", action="append", metavar="NAME=FILE.npy",
                   help="a decision made elsewhere (e.g. a pruning method's keep vector, "
                        "written by `pruneopt prune --out`) to cross-check beside the solvers")
    p.add_argument("--time-limit", type=positive_float, default=None,
                   help="seconds per solver (each solver runs under its own limit)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", metavar="OUT")
    p.set_defaults(func=cmd_crosscheck)

    p = sub.add_parser("generate", help="write an instance: a random joint ILP, or the joint "
                                         "MIQP (joint-qp) of a trained digits network")
    p.add_argument("formulation", choices=["joint", "joint-qp"])
    p.add_argument("--layers", default=None,
                   help="joint: the number of layers (default 8); joint-qp: comma-separated "
                        "layer names or indices (default: the whole network)")
    p.add_argument("--items", type=positive_int, default=None,
                   help="joint: items (default 1000); joint-qp: weights sampled from the "
                        "layers (default: all of them)")
    p.add_argument("--model", choices=["digits-mlp", "digits-cnn"], default=None,
                   help="joint-qp: the trained network (default digits-cnn)")
    p.add_argument("--calibration", type=positive_int, default=None,
                   help="joint-qp: n, the samples whose gradients form X (default 128)")
    p.add_argument("--block-size", type=positive_int, default=None,
                   help="joint-qp: FALCON's block-diagonal Fisher, blocks of this many weights "
                        "of a layer (default: the full Fisher)")
    p.add_argument("--dist", choices=DISTRIBUTIONS, default="kaiming")
    p.add_argument("--shape", choices=SHAPES, default="random")
    p.add_argument("--keep-nnz", type=_fraction, default=0.5)
    p.add_argument("--keep-flops", type=_fraction, default=0.4)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("export", help="write the declared model as LP or MPS")
    p.add_argument("file")
    p.add_argument("--format", choices=["lp", "mps"], required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("solvers", help="list the solvers of a formulation")
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_solvers)

    p = sub.add_parser("report", help="the main job: an optimality-gap report")
    p.add_argument("--out", default="pruneopt-report")
    p.add_argument("--quick", action="store_true", help="a one-minute version")
    p.add_argument("--config", metavar="FILE.toml",
                   help="your own study (the `pruneopt sweep` schema) instead of the default")
    p.add_argument("--resume", action="store_true",
                   help="keep the jobs already in DIR/sweep-rows.csv (default: start afresh)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes (default: min(2, CPUs))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=positive_float, default=None,
                   help="seconds per solver run, in every study (default: each study's own)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_report)

    from pruneopt import cli_allocate, cli_channels, cli_prune, cli_sweep

    cli_prune.add_parser(sub)
    cli_channels.add_parser(sub)
    cli_allocate.add_parser(sub)
    cli_sweep.add_parser(sub)
    return parser


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (InputError, ValueError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except BrokenPipeError:
        raise
    except (RuntimeError, OSError) as exc:  # a run that failed its own checks (e.g. a budget
        print(f"pruneopt: error: {exc}", file=sys.stderr)  # violated), or I/O failing after
        return 1  # the output paths were checked (a full disk)


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:  # also for --help (SystemExit): a closed pipe shows up at the flush
            sys.stdout.flush()
    except BrokenPipeError:
        # stdout was closed early (`pruneopt ... | head`): end quietly, as the Python docs
        # advise: the interpreter's own flush at exit must not fail again
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
