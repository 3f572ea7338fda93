"""``pruneopt allocate``: per-layer budgets under one global FLOP/NNZ budget (DESIGN §2b).

    pruneopt allocate --model MODEL --flops F [--nnz N] --solver NAME [--fractions 0.1,...,1]
                      [--json] [--out DIR]
    pruneopt allocate --table LOSSES.csv --flops F [--nnz N] --solver NAME [--json] [--out DIR]

With ``--model`` the loss table comes from the network's quadratic model (one option per layer
and keep fraction: top-|w| mask + backsolve of the layer's block, see
:mod:`pruneopt.models.allocation_tables`), the chosen options are applied to the model and the
budgets and accuracy are recounted on it. With ``--table`` the user's CSV (columns layer,
option, loss, nnz, flops) is solved as it is (without torch). Budgets are fractions of the
densest choice. The pipeline is :mod:`pruneopt.models.workflows.allocate`.
``--out DIR`` writes ``problem.npz`` (the instance) and ``record.json`` (and, with --model,
``model.pt`` as ``pruneopt prune`` does).
"""

from __future__ import annotations

import sys

from pruneopt.cli_output import fmt, print_record


def add_parser(sub) -> None:
    from pruneopt.cli_types import kept_fraction, positive_float, positive_int
    from pruneopt.models.defaults import DEFAULT_CALIBRATION

    p = sub.add_parser("allocate", help="per-layer budgets under one global budget (MCKP)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="as for pruneopt prune")
    src.add_argument("--table", metavar="CSV", help="a loss table: layer,option,loss,nnz,flops")
    p.add_argument("--flops", type=kept_fraction, required=True)
    p.add_argument("--nnz", type=kept_fraction, default=None)
    p.add_argument("--solver", default="exact")
    p.add_argument("--time-limit", type=positive_float, default=None)
    p.add_argument("--fractions", default=None, help="keep fractions per layer, comma-separated")
    p.add_argument("--calibration", type=positive_int, default=DEFAULT_CALIBRATION)
    p.add_argument("--input-shape", metavar="C,H,W")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", metavar="DIR")
    p.set_defaults(func=cmd_allocate)


def _fractions(text):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"fractions: expected comma-separated numbers, got {text!r}") from None


def cmd_allocate(args) -> int:
    if args.out:  # before any work: a path that cannot be written is bad input
        from pruneopt.formulations.files import check_output_dir

        check_output_dir(args.out, "out")
    from pruneopt.models.workflows.allocate import AllocateSettings, run_allocate, save_allocate

    settings = AllocateSettings(keep_flops=args.flops, keep_nnz=args.nnz, solver=args.solver,
                                time_limit=args.time_limit, calibration=args.calibration,
                                seed=args.seed)
    input_shape = None
    if args.model is not None:
        from pruneopt.models.workflows.loading import parse_input_shape

        input_shape = parse_input_shape(args.input_shape)
        settings.fractions = _fractions(args.fractions)
    run = run_allocate(settings, table=args.table, model=args.model, input_shape=input_shape)
    if args.out:
        save_allocate(run, args.out)
    print_record(run.record, args.json, lambda r: [
        f"{r['solver']}: {r['status']} objective {fmt(r['objective'], '.6g')} "
        f"bound {fmt(r['bound'], '.6g')} gap {fmt(r['gap'], '.3g')}",
        *(f"  {layer['name']:24s} keep {layer['keep']}  nnz {layer['nnz']}"
          for layer in r.get("layers", []))])
    if not args.json and "accuracy_after" in run.record:
        print(f"  accuracy {run.record['accuracy_before']:.4f} -> "
              f"{run.record['accuracy_after']:.4f}", file=sys.stderr)
    return 0 if run.result.status != "error" else 1
