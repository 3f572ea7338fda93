"""``pruneopt allocate``: per-layer budgets under one global FLOP/NNZ budget (DESIGN §2b).

    pruneopt allocate --model MODEL --flops F [--nnz N] --solver NAME [--fractions 0.1,...,1]
                      [--json] [--out DIR]
    pruneopt allocate --table LOSSES.csv --flops F [--nnz N] --solver NAME [--json] [--out DIR]

With ``--model`` the loss table comes from the network's quadratic model (one option per layer
and keep fraction: top-|w| mask + backsolve of the layer's block, see
:mod:`pruneopt.models.allocation_tables`), the chosen options are applied to the model and the
budgets and accuracy are recounted on it. With ``--table`` the user's CSV (columns layer,
option, loss, nnz, flops) is solved as it is. Budgets are fractions of the densest choice.
``--out DIR`` writes ``problem.npz`` (the instance) and ``record.json`` (and, with --model,
``model.pt`` as ``pruneopt prune`` does).
"""

from __future__ import annotations

import json
import pathlib
import sys


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
    from pruneopt.formulations.allocation.problem import AllocationProblem
    from pruneopt.solvers import solve

    record: dict = {"command": "allocate", "flops_asked": args.flops, "nnz_asked": args.nnz}
    if args.table:
        problem = AllocationProblem.from_csv(args.table, keep_flops=args.flops, keep_nnz=args.nnz)
        result = solve(problem, args.solver, time_limit=args.time_limit)
        record["table"] = args.table
        resolved = None
    else:
        problem, result, resolved, extra = _from_model(args)
        record.update(extra)
    record.update({k: v for k, v in result.summary().items() if k in (
        "solver", "status", "objective", "bound", "gap", "proven_optimal", "seconds",
        "message", "nnz_used", "flops_used")})
    if result.x is not None:
        labels = problem.option_labels
        chosen = problem.option_ptr[:-1] + result.x
        record["layers"] = [{"name": (problem.names or [str(g) for g in range(problem.num_layers)])[g],
                             "option": int(result.x[g]),
                             "keep": None if labels is None else float(labels[chosen[g]]),
                             "nnz": int(problem.nnz[chosen[g]]),
                             "flops": float(problem.flops[chosen[g]])}
                            for g in range(problem.num_layers)]
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        problem.save(out / "problem.npz")
        if resolved is not None and record.get("budgets_met"):
            from pruneopt.models.workflow import save_checkpoint

            save_checkpoint(resolved, record, out)
        (out / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{record['solver']}: {record['status']} objective {record['objective']:.6g} "
              f"bound {record['bound']:.6g} gap {record['gap']:.3g}")
        for layer in record.get("layers", []):
            print(f"  {layer['name']:24s} keep {layer['keep']}  nnz {layer['nnz']}")
        if "accuracy_after" in record:
            print(f"  accuracy {record['accuracy_before']:.4f} -> {record['accuracy_after']:.4f}",
                  file=sys.stderr)
    return 0 if result.status != "error" else 1


def _from_model(args):
    import torch

    from pruneopt.models.allocation_tables import (
        DEFAULT_FRACTIONS,
        allocation_table,
        apply_allocation,
    )
    from pruneopt.models.costs import assign_weights, prunable_layers, sparse_macs, total_weights
    from pruneopt.models.digits import evaluate_accuracy
    from pruneopt.models.fisher import quadratic_problem
    from pruneopt.models.workflow import (
        calibration_batch,
        dataset_for,
        parse_input_shape,
        resolve_model,
    )
    from pruneopt.solvers import solve

    resolved = resolve_model(args.model, input_shape=parse_input_shape(args.input_shape),
                             seed=args.seed)
    model = resolved.model.eval()
    layers = prunable_layers(model, torch.zeros((1, *resolved.input_shape)))
    data = dataset_for(resolved, n_train=max(args.calibration, 256), seed=args.seed)
    X, y = calibration_batch(data, args.calibration, args.seed)
    qp = quadratic_problem(model, layers, X, y, nnz_budget=total_weights(layers),
                           flop_budget=float(sum(layer.macs for layer in layers)))
    problem = allocation_table(qp, _fractions(args.fractions) or DEFAULT_FRACTIONS,
                               keep_nnz=args.nnz, keep_flops=args.flops)
    result = solve(problem, args.solver, time_limit=args.time_limit)
    extra = {"model": args.model, "accuracy_before": evaluate_accuracy(model, data.X_eval,
                                                                         data.y_eval)}
    if result.x is not None and result.feasible:
        assign_weights(layers, apply_allocation(qp, problem, result.x))
        nnz = sum(int(torch.count_nonzero(layer.weight)) for layer in layers)
        macs = sparse_macs(layers)
        extra.update(nnz_after=nnz, macs_after=macs, nnz_dense=total_weights(layers),
                     macs_dense=int(qp.total_flops),
                     budgets_met=bool(nnz <= problem.nnz_limit and macs <= problem.flop_limit),
                     accuracy_after=evaluate_accuracy(model, data.X_eval, data.y_eval),
                     data=data.kind)
    return problem, result, resolved, extra
