"""``pruneopt channels``: structured channel pruning of a PyTorch model under a FLOP budget.

    pruneopt channels --model MODEL --flops F --solver NAME [--score l1|l2|bn|taylor]
                      [--json] [--out DIR] [--input-shape C,H,W] [--time-limit S] [--seed S]

MODEL is resolved as for ``pruneopt prune`` (zoo name, checkpoint, or module:function with
--input-shape). The channel groups and their bilinear MAC model come from the network's graph
(:mod:`pruneopt.models.channels`); the channel-selection problem (DESIGN §2c) keeps at most
F·(dense MACs) and is solved by any solver registered for the "channels" formulation (exact,
fast, dp, pyomo-highs, cpsat, uniform, global-threshold, ...); the model is then shrunk
physically and its MACs are recounted with ``FlopCounterMode`` on the shrunk model, which must
equal the problem's prediction exactly.

Accuracy: the digits models on the digits test split; other models on synthetic inputs labelled
by the dense model (so "accuracy" is agreement with the dense model, 1.0 before pruning).

``--out DIR`` writes ``model.pt`` (the whole shrunk module, ``torch.save(model)``: its
architecture changed, so a state_dict alone would not rebuild it; load it with
``torch.load(path, weights_only=False)`` — or ``pruneopt ... --model DIR/model.pt
--input-shape C,H,W`` — where pruneopt is importable), ``record.json``, ``problem.npz`` (the
instance, for ``pruneopt solve``) and ``selection.npz`` (x and the counts).

With ``--json`` the record is the only thing on stdout.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time

from pruneopt.cli_types import kept_fraction, positive_float, positive_int

SCORES = ("l1", "l2", "bn", "taylor")
DEFAULT_CALIBRATION = 64
DEFAULT_EVAL = 512  # synthetic evaluation inputs, as in ``pruneopt prune``


def add_parser(sub) -> None:
    p = sub.add_parser("channels", help="structured channel pruning under a FLOP budget")
    p.add_argument("--model", required=True,
                   help="zoo name (digits-mlp, digits-cnn, resnet20, resnet56, mobilenetv1, "
                        "resnet50), a checkpoint path, or module:function")
    p.add_argument("--flops", type=kept_fraction, required=True, help="fraction of MACs kept")
    p.add_argument("--solver", required=True,
                   help="a solver of the channels formulation (exact, fast, dp, pyomo-highs, "
                        "cpsat, uniform, global-threshold, ...)")
    p.add_argument("--score", choices=SCORES, default="l1",
                   help="channel importance (default l1)")
    p.add_argument("--json", action="store_true", help="print the record as JSON only")
    p.add_argument("--out", metavar="DIR",
                   help="write DIR/model.pt, record.json, problem.npz, selection.npz")
    p.add_argument("--input-shape", metavar="C,H,W")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="S")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-keep", type=positive_int, default=1,
                   help="channels every prunable group keeps at least (default 1)")
    p.add_argument("--calibration", type=positive_int, default=DEFAULT_CALIBRATION,
                   help="inputs for taylor scores")
    p.add_argument("--eval-samples", type=positive_int, default=DEFAULT_EVAL,
                   help="synthetic evaluation inputs (models without a data set)")
    p.add_argument("--data", metavar="FILE.npz", help="your data: arrays X (N,C,H,W) and y (N,)")
    p.set_defaults(func=cmd_channels)


# --------------------------------------------------------------------------------- pieces
def _synthetic(model, input_shape, n_train: int, n_eval: int, seed: int):
    """Standard-normal inputs labelled by the dense model's own predictions."""
    import torch

    from pruneopt.models.workflow import Dataset

    gen = torch.Generator().manual_seed(seed)
    X_train = torch.randn((n_train, *input_shape), generator=gen)
    X_eval = torch.randn((n_eval, *input_shape), generator=gen)
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            def label(X):
                out = torch.cat([model(X[i:i + 256]) for i in range(0, X.shape[0], 256)])
                if out.ndim != 2:
                    raise ValueError(f"model: output must be (batch, classes) logits, got "
                                     f"shape {tuple(out.shape)}")
                return out.argmax(dim=1)
            y_train, y_eval = label(X_train), label(X_eval)
    finally:
        for m, mode in saved:
            m.training = mode
    return Dataset("synthetic", X_train, y_train, X_eval, y_eval)


def _jsonable(value):
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def run_channels(args) -> tuple[object, dict, dict]:
    """Everything but the printing: returns (shrunk model, record, extras for --out)."""
    import torch

    from pruneopt.formulations.channels.problem import ChannelProblem
    from pruneopt.models.channels import build_channel_graph, channel_problem
    from pruneopt.models.channel_importance import channel_scores
    from pruneopt.models.costs import flop_counter_macs
    from pruneopt.models.digits import DIGITS_MODELS, evaluate_accuracy
    from pruneopt.models.shrink import shrink_model
    from pruneopt.models.workflow import (
        dataset_for,
        load_data_file,
        parse_input_shape,
        resolve_model,
    )
    from pruneopt.solvers import solve
    from pruneopt.solvers.registry import get_solver

    start = time.perf_counter()
    if args.score not in SCORES:
        raise ValueError(f"score: must be one of {', '.join(SCORES)}, got {args.score!r}")
    _kept_fraction_value(args.flops)
    get_solver(ChannelProblem.kind, args.solver)  # an unknown solver fails before any work

    torch.manual_seed(args.seed)
    resolved = resolve_model(args.model, input_shape=parse_input_shape(args.input_shape),
                             seed=args.seed)
    model = resolved.model.eval()
    example = torch.zeros((1, *resolved.input_shape))
    graph = build_channel_graph(model, example)

    if args.data is not None:
        data = load_data_file(args.data, resolved.input_shape, args.seed)
    elif resolved.spec in DIGITS_MODELS:
        data = dataset_for(resolved, n_train=args.calibration, seed=args.seed)
    else:
        data = _synthetic(model, resolved.input_shape, args.calibration, args.eval_samples,
                          args.seed)
    calib_X = calib_y = None
    if args.score == "taylor":
        n = min(args.calibration, int(data.X_train.shape[0]))
        idx = torch.randperm(data.X_train.shape[0],
                             generator=torch.Generator().manual_seed(args.seed))[:n]
        calib_X, calib_y = data.X_train[idx], data.y_train[idx]
    scores = channel_scores(model, graph, args.score, X=calib_X, y=calib_y)
    problem, _ = channel_problem(model, example, scores, args.flops, args.min_keep, graph=graph)
    least = problem.flops_of_counts(problem.min_counts)
    if least > problem.flop_budget:
        raise ValueError(f"flops: {args.flops} of {graph.dense_macs:,} MACs is "
                         f"{problem.flop_budget:,.0f}, below the least this model can reach "
                         f"({least:,.0f} MACs = {least / graph.dense_macs:.4f} of dense, every "
                         f"group at min-keep {args.min_keep}, fixed groups whole)")

    result = solve(problem, args.solver, time_limit=args.time_limit)
    if result.x is None:
        raise RuntimeError(f"solver: {args.solver} returned no selection (status "
                           f"{result.status}: {result.message})")
    z = problem.canonical(result.x)
    k = problem.counts(z)
    shrunk = shrink_model(model, graph, z, example_input=example)
    macs_before = flop_counter_macs(model, example)
    macs_measured = flop_counter_macs(shrunk, example)
    macs_predicted = graph.macs_of_counts(k)
    if macs_measured != macs_predicted or macs_before != graph.dense_macs:
        raise RuntimeError(f"macs: the shrunk model counts {macs_measured} MACs, the problem "
                           f"predicts {macs_predicted} (dense {macs_before} vs "
                           f"{graph.dense_macs}): a bug in the channel graph")
    acc_before = evaluate_accuracy(model, data.X_eval, data.y_eval)
    acc_after = evaluate_accuracy(shrunk, data.X_eval, data.y_eval)
    prunable = graph.prunable
    record = {
        "command": "channels",
        "model": resolved.spec,
        "input_shape": list(resolved.input_shape),
        "score": args.score,
        "solver": result.solver,
        "status": result.status,
        "objective": result.objective,
        "bound": result.bound,
        "gap": result.gap,
        "proven_optimal": result.proven_optimal,
        "solve_seconds": result.seconds,
        "message": result.message,
        "flops_asked": args.flops,
        "flop_budget": problem.flop_budget,
        "budget_met": macs_measured <= problem.flop_budget * (1 + 1e-12),
        "macs_before": macs_before,
        "macs_predicted": macs_predicted,
        "macs_measured": macs_measured,
        "macs_kept": macs_measured / macs_before if macs_before else 1.0,
        "channels_before": graph.num_channels,
        "channels_after": int(k.sum()),
        "prunable_channels_before": int(graph.sizes[prunable].sum()),
        "prunable_channels_after": int(k[prunable].sum()),
        "num_groups": graph.num_groups,
        "prunable_groups": int(prunable.sum()),
        "groups": [{"name": graph.names[g], "channels": int(graph.sizes[g]), "kept": int(k[g]),
                    "fixed": bool(graph.fixed[g])} for g in range(graph.num_groups)],
        "unknown_ops": list(graph.unknown_ops),
        "accuracy_before": acc_before,
        "accuracy_after": acc_after,
        "data": data.kind,
        "n_eval": int(data.X_eval.shape[0]),
        "seed": args.seed,
        "seconds": time.perf_counter() - start,
    }
    extras = {"problem": problem, "x": z, "counts": k}
    return shrunk, _jsonable(record), extras


def _kept_fraction_value(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"flops: must be a fraction kept in (0, 1], got {value!r}")


def save_outputs(shrunk, record: dict, extras: dict, out_dir: str | os.PathLike) -> dict:
    """Write model.pt (the whole module), record.json, problem.npz and selection.npz."""
    import numpy as np
    import torch

    from pruneopt.formulations.common import save_npz_atomic

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"model": str(out / "model.pt"), "record": str(out / "record.json"),
             "problem": str(out / "problem.npz"), "selection": str(out / "selection.npz")}
    tmp = out / ".model.pt.tmp"
    torch.save(shrunk, tmp)
    os.replace(tmp, paths["model"])
    extras["problem"].save(paths["problem"])
    save_npz_atomic(paths["selection"], {"x": extras["x"].astype(np.uint8),
                                         "counts": extras["counts"].astype(np.int64)})
    record["files"] = paths
    tmp = out / ".record.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, paths["record"])
    return paths


def cmd_channels(args) -> int:
    shrunk, record, extras = run_channels(args)
    if args.out:
        save_outputs(shrunk, record, extras, args.out)
    if args.json:
        print(json.dumps(record, allow_nan=False))
    else:
        gap = record["gap"] if record["gap"] is not None else math.nan
        print(f"{record['solver']} on {record['model']} ({record['score']} scores): "
              f"{record['status']}{' (proven)' if record['proven_optimal'] else ''}, objective "
              f"{record['objective']:.6g}, gap {gap:.3g}; "
              f"MACs {record['macs_measured']:,}/{record['macs_before']:,} "
              f"({record['macs_kept']:.3f} kept, asked {record['flops_asked']}), channels "
              f"{record['channels_after']}/{record['channels_before']}, accuracy "
              f"{record['accuracy_before']:.4f} -> {record['accuracy_after']:.4f} "
              f"({record['data']} data), {record['seconds']:.1f}s")
        for key, path in record.get("files", {}).items():
            print(f"{key}: {path}", file=sys.stderr)
    return 0
