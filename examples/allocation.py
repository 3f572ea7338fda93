"""Layer budget allocation — a multiple-choice knapsack — on a 4-layer toy CNN.

The toy network (no torch needed, the shapes are written down), input 1×8×8:

    layer  shape                                   output   weights  MACs/weight  dense MACs
    conv1  Conv2d(1→4, 3×3, padding 1)             4×8×8         36           64        2304
    conv2  Conv2d(4→8, 3×3, stride 2, padding 1)   8×4×4        288           16        4608
    conv3  Conv2d(8→8, 3×3, padding 1)             8×4×4        576           16        9216
    fc     Linear(8→10) after global avg-pool      10            80            1          80
    dense                                                       980                    16208

Every layer g chooses one option j: keep the fraction r_j ∈ {0.25, 0.5, 0.75, 1.0} of its
weights (the largest |w|). Option (g, j) keeps n_gj = round(r_j·n_g) weights, costs
f_gj = n_gj·(MACs per weight of g) and loses e_gj = the squared magnitude it prunes,
Σ_{pruned i} w_i² (the magnitude-pruning distortion of the layer; ``pruneopt.models.
allocation_tables`` builds e from the quadratic model instead). Weights are kaiming draws,
std √(2/fan_in). Budgets: K = ⌊0.5·980⌋ = 490 weights and F = 0.4·16208 = 6483.2 MACs.
The program (DESIGN §2b) is

    minimize    Σ_g Σ_j e_gj y_gj
    subject to  Σ_j y_gj = 1                 g ∈ {conv1, conv2, conv3, fc}   (one_option)
                Σ_g Σ_j n_gj y_gj ≤ 490                                      (nnz_budget)
                Σ_g Σ_j f_gj y_gj ≤ 6483.2                                   (flop_budget)
                y ∈ {0,1}^16

With ``--seed 0`` the table is (keep 0.25 / 0.5 / 0.75 / 1.0; losses rounded to 3 decimals)

    conv1  n =   9 /  18 /  27 /  36   f =  576 / 1152 / 1728 / 2304   e = 1.258 / 0.318 / 0.041 / 0
    conv2  n =  72 / 144 / 216 / 288   f = 1152 / 2304 / 3456 / 4608   e = 5.032 / 1.387 / 0.179 / 0
    conv3  n = 144 / 288 / 432 / 576   f = 2304 / 4608 / 6912 / 9216   e = 3.991 / 0.998 / 0.123 / 0
    fc     n =  20 /  40 /  60 /  80   f =   20 /   40 /   60 /   80   e = 5.020 / 1.339 / 0.214 / 0

The MACs decide: conv3 at 0.5 alone costs 4608 of the 6483.2 MACs, which leaves conv1 and conv2
at 0.25 (best such choice: 0.998 + 5.032 + 1.258 + 0 = 7.288); dropping conv3 to 0.25 costs
3.991 but frees the MACs for conv1 at 0.75 and conv2 at 0.5. The fc layer is nearly free in
MACs, so it is kept whole.
Only 36 of the 4^4 = 256 choices are feasible. The optimum — found by HiGHS on the printed
model, by the purpose-built ``exact`` and by enumerating all 256 choices — is
(conv1, conv2, conv3, fc) = (0.75, 0.5, 0.25, 1.0): loss 0.041 + 1.387 + 3.991 + 0 = 5.419,
395 weights, 1728 + 2304 + 2304 + 80 = 6416 MACs. ``fast`` (the LP over each layer's convex
hull, solved by a Lagrangian search) finds the same choice; its dual value 4.8605 is a
certified lower bound, a certified gap of 10.3 % that needs no exact solver. The last line is
machine-readable: ``RESULT {json}``.

    python examples/allocation.py --seed 0
"""

from __future__ import annotations

import itertools

import numpy as np
import pyomo.environ as pyo
from teaching import compare_and_finish, declared_model_text, parse_args  # examples/teaching.py

import pruneopt
from pruneopt.formulations.allocation.problem import AllocationProblem

# (name, out_channels, in_channels, kernel (0 = Linear), output H (=W))
LAYERS = [("conv1", 4, 1, 3, 8), ("conv2", 8, 4, 3, 4), ("conv3", 8, 8, 3, 4), ("fc", 10, 8, 0, 1)]
KEEP = np.array([0.25, 0.5, 0.75, 1.0])  # the options: fractions of a layer's weights kept
KEEP_NNZ_PCT, KEEP_FLOPS_PCT = 50, 40  # budgets, % of the dense network


def build(seed: int):
    rng = np.random.default_rng(seed)
    loss, nnz, flops, labels, names = [], [], [], [], []
    for name, c_out, c_in, k, h_out in LAYERS:
        if k:  # Conv2d: a weight is used once per output position
            n, cost, fan_in = c_out * c_in * k * k, h_out * h_out, c_in * k * k
        else:  # Linear
            n, cost, fan_in = c_out * c_in, 1, c_in
        w = rng.standard_normal(n) * np.sqrt(2.0 / fan_in)
        energy = np.concatenate(([0.0], np.cumsum(np.sort(w * w)[::-1])))  # kept w² by count
        kept = np.rint(KEEP * n).astype(np.int64)
        loss.append(np.round(energy[-1] - energy[kept], 3))  # Σ w² of the pruned weights
        nnz.append(kept)
        flops.append(kept * cost)
        labels.append(KEEP)
        names.append(name)
    dense_nnz = sum(int(v[-1]) for v in nnz)
    dense_flops = sum(float(v[-1]) for v in flops)
    return AllocationProblem.from_layers(
        loss, nnz, flops, nnz_budget=dense_nnz * KEEP_NNZ_PCT // 100,
        flop_budget=dense_flops * KEEP_FLOPS_PCT / 100, names=names, option_labels=labels)


def brute_force(problem: AllocationProblem):
    """Enumerate every choice (one option per layer): the least feasible loss and its choice."""
    ptr = problem.option_ptr
    best, best_choice, n_feasible = np.inf, None, 0
    for choice in itertools.product(*(range(int(c)) for c in problem.option_counts)):
        idx = ptr[:-1] + np.array(choice)
        if problem.nnz[idx].sum() <= problem.nnz_limit and \
                problem.flops[idx].sum() <= problem.flop_limit:
            n_feasible += 1
            value = float(problem.loss[idx].sum())
            if value < best:
                best, best_choice = value, np.array(choice)
    return best, best_choice, n_feasible




def main(argv=None) -> int:
    args = parse_args(__doc__, argv)

    problem = build(args.seed)
    ptr, names, labels = problem.option_ptr, problem.names, problem.option_labels

    def fmt(choice):
        return "(" + ", ".join(f"{labels[ptr[g] + c]:g}" for g, c in enumerate(choice)) + ")"

    print(f"=== Toy CNN (seed {args.seed}): one option (keep fraction) per layer ===")
    print(f"{'layer':<6} {'keep':>5} {'loss e':>8} {'nnz n':>6} {'MACs f':>7}")
    for g, name in enumerate(names):
        for i in range(int(ptr[g]), int(ptr[g + 1])):
            print(f"{name if i == ptr[g] else '':<6} {labels[i]:>5.2f} {problem.loss[i]:>8.3f} "
                  f"{problem.nnz[i]:>6d} {problem.flops[i]:>7.0f}")
    print(f"dense: {problem.dense_nnz} weights, {problem.dense_flops:.0f} MACs;  budgets: "
          f"K = {problem.nnz_budget} weights, F = {problem.flop_budget:.1f} MACs")

    model = problem.to_pyomo()
    constraints = [c.local_name for c in model.component_objects(pyo.Constraint)]
    if not args.quiet:
        print("\n=== Declared model: Pyomo pprint of problem.to_pyomo() (objective 'loss'; "
              "constraints 'one_option', 'nnz_budget', 'flop_budget'; trimmed) ===")
        print(declared_model_text(model))

    print("\n=== Solves ===")
    runs = {solver: pruneopt.solve(problem, solver) for solver in ("pyomo-highs", "exact", "fast")}
    bf_value, bf_choice, n_feasible = brute_force(problem)
    print(f"{'solver':<12} {'kind':<11} {'status':<9} {'objective':>10} {'bound':>10} "
          f"{'proven':>6} {'seconds':>8}  keep per layer {tuple(names)}")
    for solver, r in runs.items():
        kind = "fast" if solver == "fast" else "exact"
        print(f"{solver:<12} {kind:<11} {r.status:<9} {r.objective:>10.4f} {r.bound:>10.4f} "
              f"{str(r.proven_optimal):>6} {r.seconds:>8.4f}  {fmt(r.x)}")
    print(f"{'brute force':<12} {'enumerate':<11} {'optimal':<9} {bf_value:>10.4f} "
          f"{bf_value:>10.4f} {'True':>6} {'':>8}  {fmt(bf_choice)}"
          f"  ({n_feasible} of {int(np.prod(problem.option_counts))} choices feasible)")

    exact, fast = runs["pyomo-highs"], runs["fast"]
    for label, r in (("exact", exact), ("fast", fast)):
        ev = problem.evaluate(r.x)
        print(f"{label:<5} uses {ev.usage['nnz']:.0f} of {problem.nnz_budget} weights, "
              f"{ev.usage['flops']:.0f} of {problem.flop_budget:.1f} MACs")

    return compare_and_finish("allocation", problem, args.seed, runs, exact="pyomo-highs",
                              other="exact", fast="fast", bruteforce=bf_value,
                              constraints=constraints,
                              bound_what="the Lagrangian dual of the convex-hull LP", digits=4)


if __name__ == "__main__":
    raise SystemExit(main())
