"""``pruneopt channels``: structured channel pruning of a PyTorch model under a FLOP budget.

The channel groups and their bilinear MAC model come from the network's graph
(:mod:`pruneopt.models.channels`); the channel-selection problem (DESIGN §2c) keeps at most
F·(dense MACs) and is solved by any solver registered for the "channels" formulation (exact,
fast, dp, pyomo-highs, cpsat, uniform, global-threshold, ...); the model is then shrunk
physically and its MACs are recounted with ``FlopCounterMode`` on the shrunk model
(:func:`.common.shrink_and_measure`), which must equal the problem's prediction exactly.

Accuracy: the digits models on the digits test split, a ``--data`` file on its 80/20 split,
other models on synthetic inputs labelled by the dense model (:mod:`.loading`; "accuracy" is
then agreement with the dense model, 1.0 before pruning).

:func:`save_channels` writes ``model.pt`` (the whole shrunk module: its architecture changed,
so a state_dict alone would not rebuild it), ``record.json`` (which lists the files),
``problem.npz`` (the instance, for ``pruneopt solve``) and ``selection.npz`` (x and the counts).

Torch-Pruning (the ``[tp]`` extra, :mod:`pruneopt.models.torch_pruning_interop`):
:func:`tp_plan` turns the run's selection into a pruning plan that ``tp.DependencyGraph``
applies (``pruneopt channels --export-tp-plan FILE.json``); with ``settings.tp_check`` the
record gains ``torch_pruning``: DepGraph's groups against pruneopt's, and the MACs of the dense
model pruned by DepGraph with that plan (FlopCounterMode/2) against pruneopt's prediction.

The record names what the tracer could not model: ``unknown_ops`` (the ops it met and could
not model) and, per group, ``reason`` (why it is fixed; empty when prunable).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pruneopt.formulations.checks import fraction
from pruneopt.models.defaults import CHANNEL_CALIBRATION, CHANNEL_SCORES, SYNTHETIC_EVAL


@dataclass
class ChannelSettings:
    """What ``pruneopt channels`` passes to :func:`run_channels`."""

    keep_flops: float
    solver: str
    score: str = "l1"
    min_keep: int = 1
    calibration: int = CHANNEL_CALIBRATION  # inputs for taylor scores (and synthetic training)
    eval_samples: int = SYNTHETIC_EVAL  # synthetic evaluation inputs
    time_limit: float | None = None
    seed: int = 0
    tp_check: bool = False  # cross-check groups and plan with Torch-Pruning (the [tp] extra)

    def validate(self) -> None:
        """Bad settings (an unknown solver included) fail here, before any work."""
        from pruneopt.formulations.channels.problem import ChannelProblem
        from pruneopt.solvers.registry import get_solver

        if self.score not in CHANNEL_SCORES:
            raise ValueError(f"score: must be one of {', '.join(CHANNEL_SCORES)}, got "
                             f"{self.score!r}")
        fraction(self.keep_flops, "flops", what="a fraction kept")
        get_solver(ChannelProblem.kind, self.solver)
        if self.tp_check:
            from pruneopt.models.torch_pruning_interop import import_torch_pruning

            import_torch_pruning()  # not installed: one line before any work


@dataclass
class ChannelRun:
    """The shrunk model, its JSON-ready record, and the instance with its solution."""

    model: object
    record: dict
    problem: object
    x: np.ndarray
    counts: np.ndarray
    graph: object = None  # the ChannelGraph the selection refers to (for tp_plan)


def run_channels(spec: str, settings: ChannelSettings, *, input_shape=None,
                 data_file: str | None = None) -> ChannelRun:
    """Select channels of the named model under ``settings.keep_flops`` and shrink it."""
    from pruneopt.formulations.files import to_jsonable
    from pruneopt.models.channel_importance import channel_scores
    from pruneopt.models.channels import build_channel_graph, channel_problem
    from pruneopt.models.costs import flop_counter_macs
    from pruneopt.models.workflows.common import shrink_and_measure
    from pruneopt.models.workflows.loading import calibration_batch, dataset_for, open_model
    from pruneopt.solvers import solve

    start = time.perf_counter()
    settings.validate()
    resolved = open_model(spec, input_shape=input_shape, seed=settings.seed)
    model, example = resolved.model, resolved.example_input()
    traced = time.perf_counter()
    graph = build_channel_graph(model, example)
    trace_seconds = time.perf_counter() - traced
    data = dataset_for(resolved, n_train=settings.calibration, seed=settings.seed,
                       data_file=data_file, n_eval=settings.eval_samples)
    calib_X = calib_y = None
    if settings.score == "taylor":
        n = min(settings.calibration, int(data.X_train.shape[0]))
        calib_X, calib_y = calibration_batch(data, n, settings.seed)
    scores = channel_scores(model, graph, settings.score, X=calib_X, y=calib_y)
    problem, _ = channel_problem(model, example, scores, settings.keep_flops, settings.min_keep,
                                 graph=graph)
    least = problem.flops_of_counts(problem.min_counts)
    if least > problem.flop_budget:
        raise ValueError(f"flops: {settings.keep_flops} of {graph.dense_macs:,} MACs is "
                         f"{problem.flop_budget:,.0f}, below the least this model can reach "
                         f"({least:,.0f} MACs = {least / graph.dense_macs:.4f} of dense, every "
                         f"group at min-keep {settings.min_keep}, fixed groups whole)")

    result = solve(problem, settings.solver, time_limit=settings.time_limit)
    if result.x is None:
        raise RuntimeError(f"solver: {settings.solver} returned no selection (status "
                           f"{result.status}: {result.message})")
    z = problem.canonical(result.x)
    k = problem.counts(z)
    shrunk, macs_measured = shrink_and_measure(model, graph, z, example)
    macs_before = flop_counter_macs(model, example)
    macs_predicted = graph.macs_of_counts(k)
    if macs_measured != macs_predicted or macs_before != graph.dense_macs:
        raise RuntimeError(f"macs: the shrunk model counts {macs_measured} MACs, the problem "
                           f"predicts {macs_predicted} (dense {macs_before} vs "
                           f"{graph.dense_macs}): a bug in the channel graph")
    acc_before, acc_after = data.accuracy(model), data.accuracy(shrunk)
    prunable = graph.prunable
    record = {
        "command": "channels",
        "model": resolved.spec,
        "input_shape": list(resolved.input_shape),
        "score": settings.score,
        "solver": result.solver,
        "status": result.status,
        "objective": result.objective,
        "bound": result.bound,
        "gap": result.gap,
        "proven_optimal": result.proven_optimal,
        "solve_seconds": result.seconds,
        "message": result.message,
        "flops_asked": settings.keep_flops,
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
                    "fixed": bool(graph.fixed[g]), "reason": graph.fixed_reason[g]}
                   for g in range(graph.num_groups)],
        "unknown_ops": list(graph.unknown_ops),
        "trace_seconds": trace_seconds,
        "accuracy_before": acc_before,
        "accuracy_after": acc_after,
        "data": data.kind,
        "n_eval": int(data.X_eval.shape[0]),
        "seed": settings.seed,
        "seconds": time.perf_counter() - start,
    }
    if settings.tp_check:
        record["torch_pruning"] = torch_pruning_check(model, example, graph, z, macs_predicted)
        record["seconds"] = time.perf_counter() - start
    return ChannelRun(shrunk, to_jsonable(record), problem, z, k, graph)


def torch_pruning_check(model, example, graph, z: np.ndarray, macs_predicted: int) -> dict:
    """DepGraph's groups against ``graph``'s, and the dense ``model`` pruned by DepGraph with the
    plan of ``z``: its FlopCounterMode MACs against pruneopt's prediction (equal where both
    tools group the same channels)."""
    from pruneopt.models.costs import flop_counter_macs
    from pruneopt.models.torch_pruning_interop import apply_plan, compare_groups, pruning_plan

    out = {}
    # Torch-Pruning's failure is a finding (e.g. no DependencyGraph for ShuffleNetV2), not a crash
    try:
        out["groups"] = compare_groups(model, example, graph)
    except Exception as exc:  # noqa: BLE001
        out["groups_error"] = f"{type(exc).__name__}: {exc}"
    try:
        pruned = apply_plan(model, example, pruning_plan(graph, z))
        macs = flop_counter_macs(pruned, example)
        out.update(plan_applied=True, plan_macs=macs, plan_macs_equal=macs == macs_predicted)
    except Exception as exc:  # noqa: BLE001
        out.update(plan_applied=False, plan_error=f"{type(exc).__name__}: {exc}")
    return out


def tp_plan(run: ChannelRun) -> dict:
    """The run's selection as a Torch-Pruning pruning plan (JSON-ready): per group that loses
    channels, its root module and the root's output channels to remove."""
    from pruneopt.models.torch_pruning_interop import pruning_plan

    r = run.record
    return {"model": r["model"], "input_shape": r["input_shape"],
            "macs_predicted": r["macs_predicted"], "macs_before": r["macs_before"],
            "apply": "for e in plan: DG.get_pruning_group(module(e['root']), "
                     "tp.prune_conv_out_channels or tp.prune_linear_out_channels "
                     "(e['kind']), e['remove']).prune()",
            "plan": pruning_plan(run.graph, run.x)}


def save_channels(run: ChannelRun, out_dir) -> dict:
    """Write DIR/model.pt (``torch.save`` of the whole shrunk module), record.json (listing the
    files), problem.npz and selection.npz; the paths are added to ``run.record["files"]``."""
    from pruneopt.models.workflows.records import npz, write_run

    paths = write_run(out_dir, run.record, model=run.model, model_key="model", files={
        "problem": ("problem.npz", run.problem),
        "selection": ("selection.npz", npz(x=run.x.astype(np.uint8),
                                           counts=run.counts.astype(np.int64)))},
        files_in_record=True)
    run.record["files"] = paths
    return paths


__all__ = ["ChannelRun", "ChannelSettings", "run_channels", "save_channels", "torch_pruning_check",
           "tp_plan"]
