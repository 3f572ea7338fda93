"""Gap measures of the structured pruners against exact programs (seeds_other.md §0, (a)–(c)).

Each measure compares what a method decided (a :class:`~pruneopt.models.structured_decision.
StructuredDecision`) with the exact optimum of a program built on the method's *own* scores and
*achieved* budget, and returns a row ``{measure, method_value, exact_value, gap, ...}``:

* **G0 — threshold search** (AutoBot). The final mask is 1[λ > t] for one global t found by
  bisection towards the target T. Sorting the N prunable λ and costing all N + 1 cuts (each with
  the "an empty layer keeps its argmax unit" rule) gives the best cut, the one of largest value
  Σλ·z with FLOPs ≤ T. ``method_value`` = Σλ of the bisection's cut, ``exact_value`` = Σλ of the
  best cut, gap = (exact − method)/|exact|; negative when the bisection overshot T (then
  ``feasibility`` = FLOPs/T > 1 says so).
* **G1 / F3 / C2 — value gap** (every method). The channel-selection program (DESIGN §2c)

      maximize Σ_g V_g(k_g)  s.t.  FLOPs(k) ≤ FLOPs(z_H),  m_g ≤ k_g ≤ n_g,

  with V_g(k) the sum of the k largest of the method's scores in group g (AutoBot's λ → G1,
  FAIR's R → F3: "keep the most Taylor-important units" free of the U-ranking, the relaxation's
  gates → C2), solved by ``pruneopt.solve(..., "exact")`` with a proof. m_g = 1, or 0 for a group
  the method emptied (a collapsed branch). gap = (V* − V_H)/|V*| ≥ 0.
* **F4 — one global tolerance** (FAIR). FAIR sets each layer's depth by ToD_l(k) = o_l(k)/k ≤ α
  separately; the global version is the multiple-choice knapsack

      maximize Σ_l Σ_k k·y_{l,k}  s.t.  Σ_l Σ_k (o_l(k) − α·k)·y_{l,k} ≤ 0,  Σ_k y_{l,k} = 1,

  solved exactly as an :class:`~pruneopt.formulations.allocation.problem.AllocationProblem` (loss −k, the
  constraint shifted per layer by C_l = max_k (α·k − o_l(k)) ≥ 0 to make its costs
  non-negative). Every per-layer choice is globally feasible, so gap = (K* − K_FAIR)/K* ≥ 0 is
  the number of units the per-layer rule leaves unpruned at the same overall overlap.
* **G2 / F5 / C1 — true-loss gap** (tiny networks). The exact minimum of the calibration
  cross-entropy over all prefix-count masks of the method's ranking with FLOPs ≤ FLOPs(z_H)
  (:mod:`pruneopt.models.mask_enumeration`); gap = CE(z_H) − CE* ≥ 0 (nats, absolute).
* **C3 — relaxation gaps** (relaxation): FLOPs of the soft gates against those of the
  thresholded mask (gap relative to the soft value) and the cross-entropy change on
  thresholding (absolute).

Not computed: F2 (FAIR's U-prefix with R values needs per-count value tables that the channels
formulation does not take; F3 bounds it from above, since every U-prefix is a selection).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pruneopt.models.structured_decision import StructuredDecision

MEASURES = {
    "G0": "threshold search: bisection's cut against the best of all N+1 cuts (value Σλ)",
    "G1": "value gap: same scores, exact allocation at the achieved MACs",
    "G2": "true-loss gap: CE against the exact best prefix mask at the achieved MACs",
    "F3": "value gap: R-scores kept, exact free selection at the achieved MACs",
    "F4": "per-layer against one global tolerance (units pruned)",
    "F5": "true-loss gap: CE against the exact best U-prefix mask at the achieved MACs",
    "C1": "true-loss gap: CE against the exact best gate-prefix mask at the achieved MACs",
    "C2": "value gap: gates kept, exact allocation (collapse allowed) at the achieved MACs",
    "C3-flops": "relaxed FLOPs of the soft gates against the thresholded mask",
    "C3-ce": "cross-entropy change on thresholding the gates",
}
VALUE_MEASURE = {"autobot": "G1", "fair": "F3", "relaxation": "C2"}
LOSS_MEASURE = {"autobot": "G2", "fair": "F5", "relaxation": "C1"}


def _rel(exact: float, method: float) -> float:
    scale = abs(exact)
    if scale == 0.0:
        return 0.0 if method == exact else math.inf
    return (exact - method) / scale


def _row(measure: str, method_value: float, exact_value: float, gap: float, **extra) -> dict:
    return {"measure": measure, "method_value": float(method_value),
            "exact_value": float(exact_value), "gap": float(gap),
            "description": MEASURES[measure], **extra}


# ------------------------------------------------------------------------------------ G0
def all_cuts(graph, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACs, value Σλ·z and threshold of every global cut of λ over the prunable channels.

    Cut j (j = 0..P) keeps the j largest λ of the P prunable channels, plus, in a group left
    empty, its largest-λ channel (AutoBot's rule); fixed groups keep everything and count 0
    value. Returns float64[P+1] MACs, float64[P+1] values, and the threshold t_j (keep λ > t_j)
    that gives cut j (the (j+1)-th largest λ; −inf for j = P).
    """
    sizes = graph.sizes
    G = graph.num_groups
    group_of = np.repeat(np.arange(G), sizes)
    prunable = ~graph.fixed[group_of]
    lam = np.asarray(lam, dtype=np.float64)
    pidx = np.flatnonzero(prunable)
    order = pidx[np.argsort(-lam[pidx], kind="stable")]
    P = order.size
    onehot = np.zeros((P + 1, G), dtype=np.int64)
    onehot[np.arange(1, P + 1), group_of[order]] = 1
    counts = np.cumsum(onehot, axis=0)
    values = np.concatenate(([0.0], np.cumsum(lam[order])))
    # an emptied prunable group keeps its best channel: count 1 and its top λ
    top = np.full(G, -np.inf)
    np.maximum.at(top, group_of[pidx], lam[pidx])
    empty = (counts == 0) & ~graph.fixed[None, :]
    counts = np.where(empty, 1, counts)
    values = values + np.where(empty, np.where(np.isfinite(top), top, 0.0)[None, :], 0.0).sum(1)
    counts = np.where(graph.fixed[None, :], sizes[None, :], counts)
    k = counts.astype(np.float64)
    macs = graph.const + k @ graph.linear_coef.astype(np.float64)
    e = graph.edges
    if e.shape[0]:
        macs = macs + (k[:, e[:, 0]] * k[:, e[:, 1]]) @ graph.edge_coef.astype(np.float64)
    thresholds = np.concatenate((lam[order], [-np.inf]))
    return macs, values, thresholds


def threshold_search_gap(decision: StructuredDecision) -> dict:
    """G0 for a global-threshold method with a FLOP target (see the module docstring)."""
    if decision.target_macs is None:
        raise ValueError("G0: the method has no FLOP target")
    lam = decision.arrays.get("lambda", decision.order)
    graph = decision.graph
    macs, values, thr = all_cuts(graph, lam)
    T = float(decision.target_macs)
    fits = np.flatnonzero(macs <= T)
    if fits.size == 0:
        raise ValueError("G0: no cut meets the FLOP target")
    j = int(fits[np.argmax(values[fits])])
    prunable = np.repeat(~graph.fixed, graph.sizes)
    v_h = float(np.sum(lam[decision.keep & prunable]))
    f_h = float(decision.achieved_macs)
    return _row("G0", v_h, values[j], _rel(values[j], v_h), target_macs=T,
                method_macs=f_h, exact_macs=float(macs[j]), feasibility=f_h / T,
                exact_threshold=float(thr[j]), closest_miss_macs=float(np.min(np.abs(macs - T))),
                method_miss_macs=abs(f_h - T))


# ------------------------------------------------------------------------------------ G1
def value_problem(decision: StructuredDecision):
    """The channel-selection program on the method's scores at its achieved MACs (G1/F3/C2).

    Fixed groups score 0 (always kept); m_g = 1, or 0 where the method emptied the group.
    ``pruneopt prune --out DIR`` saves it as ``DIR/channels.npz`` so that ``pruneopt
    crosscheck`` can put the method's decision beside every solver.
    """
    from pruneopt.formulations.channels.problem import ChannelProblem

    graph = decision.graph
    scores = decision.scores.copy()
    scores[np.repeat(graph.fixed, graph.sizes)] = 0.0
    min_keep = np.where(graph.fixed, graph.sizes, np.minimum(1, decision.counts))
    return ChannelProblem(
        scores=scores, channel_ptr=graph.channel_ptr, edges=graph.edges,
        edge_coef=graph.edge_coef.astype(np.float64),
        linear_coef=graph.linear_coef.astype(np.float64), const=float(graph.const),
        flop_budget=float(decision.achieved_macs), min_keep=min_keep.astype(np.int64),
        names=graph.names)


def value_gap(decision: StructuredDecision, *, solver: str = "exact",
              time_limit: float | None = 60.0) -> dict:
    """G1 / F3 / C2: the method's kept score against the exact channel-selection optimum."""
    from pruneopt.solvers.registry import solve

    graph = decision.graph
    counts = decision.counts
    problem = value_problem(decision)
    macs = problem.flop_budget
    res = solve(problem, solver, time_limit=time_limit)
    v_h = problem.evaluate(decision.keep).objective
    measure = VALUE_MEASURE.get(decision.method, "G1")
    if res.proven_optimal:
        exact, source = res.objective, "optimum"
    else:  # a valid upper bound still bounds the gap from above
        exact, source = res.bound, f"bound ({res.status})"
    return _row(measure, v_h, exact, _rel(exact, v_h), budget_macs=macs, solver=res.solver,
                proven_optimal=bool(res.proven_optimal), exact_source=source,
                seconds=float(res.seconds), exact_counts=graph.counts(res.x).tolist()
                if res.x is not None else None, method_counts=counts.tolist())


# ------------------------------------------------------------------------------------ F4
def global_tolerance_gap(decision: StructuredDecision, *, time_limit: float | None = 60.0) -> dict:
    """F4: FAIR's per-layer depths against the best depths under one global tolerance."""
    from pruneopt.formulations.allocation.problem import AllocationProblem
    from pruneopt.solvers.registry import solve

    alpha = float(decision.info["tolerance"])
    overlap = decision.arrays["overlap"]
    graph = decision.graph
    groups = [g for g in range(graph.num_groups)
              if not graph.fixed[g] and overlap[g] is not None and len(overlap[g]) > 1]
    if not groups:
        raise ValueError("F4: no prunable layer has a tolerance table")
    loss, flops, labels, shift = [], [], [], 0.0
    for g in groups:
        o = np.asarray(overlap[g], dtype=np.float64)
        k = np.arange(o.size, dtype=np.float64)
        cost = o - alpha * k
        c = float(-cost.min())  # ≥ 0 since cost[0] = 0
        loss.append(-k)
        flops.append(cost + c)
        labels.append(k)
        shift += c
    problem = AllocationProblem.from_layers(
        loss, [np.zeros(len(v), dtype=np.int64) for v in loss], flops, nnz_budget=None,
        flop_budget=shift, names=tuple(graph.names[g] for g in groups), option_labels=labels)
    res = solve(problem, "exact", time_limit=time_limit)
    pruned_fair = int(sum(graph.sizes[g] - decision.counts[g] for g in groups))
    if res.x is None:
        raise RuntimeError(f"F4: the exact allocation returned no solution ({res.status})")
    k_star = np.asarray(res.x, dtype=np.int64)
    used = float(sum(np.asarray(overlap[g])[k] - alpha * k for g, k in zip(groups, k_star)))
    exact = -res.objective if res.proven_optimal else -res.bound
    return _row("F4", pruned_fair, exact, _rel(exact, pruned_fair), tolerance=alpha,
                proven_optimal=bool(res.proven_optimal), exact_depths=k_star.tolist(),
                exact_overlap_slack=-used,
                method_depths=[int(graph.sizes[g] - decision.counts[g]) for g in groups])


# ------------------------------------------------------------------------------------ G2
def true_loss_gap(decision: StructuredDecision, X: torch.Tensor, y: torch.Tensor, *,
                  max_combinations: int | None = None) -> dict:
    """G2 / F5 / C1: CE of the method's mask against the exact best prefix mask of its order."""
    from pruneopt.models.mask_enumeration import MAX_COMBINATIONS, best_prefix_mask, masked_losses

    graph = decision.graph
    min_keep = np.minimum(1, decision.counts)
    best = best_prefix_mask(decision.model, graph, decision.order, float(decision.achieved_macs),
                            X, y, min_keep=min_keep,
                            max_combinations=max_combinations or MAX_COMBINATIONS)
    ce_h, acc_h = masked_losses(decision.model, graph, decision.keep[None, :], X, y)
    ce_h, acc_h = float(ce_h[0]), float(acc_h[0])
    # the method's own mask is a prefix of its order unless its scores tie; keep it a candidate
    exact = min(best["ce"], ce_h)
    return _row(LOSS_MEASURE.get(decision.method, "G2"), ce_h, exact, ce_h - exact,
                budget_macs=float(decision.achieved_macs), method_accuracy=acc_h,
                exact_accuracy=best["accuracy"] if best["ce"] <= ce_h else acc_h,
                exact_counts=best["counts"].tolist(), method_counts=decision.counts.tolist(),
                candidates=best["candidates"], combinations=best["combinations"],
                n_samples=int(X.shape[0]))


# ------------------------------------------------------------------------------------ C3
def relaxation_gaps(decision: StructuredDecision) -> list[dict]:
    """C3: what thresholding the gates changes (FLOPs and cross-entropy)."""
    info = decision.info
    soft, hard = float(info["relaxed_macs"]), float(decision.achieved_macs)
    rows = [_row("C3-flops", hard, soft, (hard - soft) / soft if soft else 0.0)]
    if "ce_soft" in info and "ce_hard" in info:
        rows.append(_row("C3-ce", info["ce_hard"], info["ce_soft"],
                         float(info["ce_hard"]) - float(info["ce_soft"])))
    return rows


def method_gaps(decision: StructuredDecision, X: torch.Tensor | None = None,
                y: torch.Tensor | None = None, *, true_loss: bool = True,
                max_combinations: int | None = None, time_limit: float | None = 60.0,
                ) -> list[dict]:
    """Every gap measure that applies to the decision's method (see the module docstring).

    The true-loss gap is computed when (X, y) are given, ``true_loss`` is set and the
    prefix-count enumeration is small enough; otherwise its row is left out and a row with
    ``measure`` and ``skipped`` (the reason) stands in its place.
    """
    rows = []
    if decision.method == "autobot" and decision.target_macs is not None:
        rows.append(threshold_search_gap(decision))
    rows.append(value_gap(decision, time_limit=time_limit))
    if decision.method == "fair":
        rows.append(global_tolerance_gap(decision, time_limit=time_limit))
    if decision.method == "relaxation" and "relaxed_macs" in decision.info:
        rows.extend(relaxation_gaps(decision))
    if true_loss and X is not None and y is not None:
        try:
            rows.append(true_loss_gap(decision, X, y, max_combinations=max_combinations))
        except ValueError as exc:
            if not str(exc).startswith("enumeration:"):
                raise
            rows.append({"measure": LOSS_MEASURE.get(decision.method, "G2"),
                         "skipped": str(exc)})
    return rows


__all__ = ["MEASURES", "all_cuts", "global_tolerance_gap", "method_gaps", "relaxation_gaps",
           "threshold_search_gap", "true_loss_gap", "value_gap", "value_problem"]
