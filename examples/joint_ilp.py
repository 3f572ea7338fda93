"""The joint FLOP/NNZ selection ILP (FALCON's projection) on a 12-weight toy network.

The toy network (no torch needed, the shapes are written down):

    input 1×3×3 ─ conv: Conv2d(1→2, kernel 2×2, no bias) ─ 2×2×2 ─ global avg-pool ─ 2
                ─ fc:   Linear(2→2, no bias) ─ 2 outputs

    layer  weights        MACs per weight (one input sample)
    conv   2·1·2·2 = 8    H_out·W_out = 2·2 = 4     (each weight is used at 4 output positions)
    fc     2·2     = 4    1
    dense: 12 weights, 8·4 + 4·1 = 36 MACs

Each weight i gets the score s_i = w_i² (magnitude pruning: with s = w², the ILP is the
Euclidean projection of w onto the budgets). Items 0..7 are the conv weights (cost 4 MACs),
items 8..11 the fc weights (cost 1 MAC). Budgets: keep at most K = 7 weights (58 %) and at most
F = 18 MACs (50 %). The program (DESIGN §2a) is

    maximize    Σ_{i=0..11} s_i x_i
    subject to  x_0 + x_1 + ... + x_11                     ≤ 7     (nnz)
                4·(x_0 + ... + x_7) + 1·(x_8 + ... + x_11)  ≤ 18    (flops)
                x ∈ {0,1}^12

With ``--seed 0`` the weights are (kaiming-like draws rounded to one decimal; conv std √(2/4),
fc std √(2/2))

    w = (+0.1, -0.1, +0.5, +0.1, -0.4, +0.3, +0.9, +0.7 | -0.7, -1.3, -0.6, 0.0)
    s = ( 0.01, 0.01, 0.25, 0.01, 0.16, 0.09, 0.81, 0.49 | 0.49, 1.69, 0.36, 0.00)

Because all items of a layer cost the same, an optimum keeps the m_conv best conv weights and
the m_fc best fc weights, with m_conv + m_fc ≤ 7 and 4·m_conv + m_fc ≤ 18. For seed 0:

    (m_conv, m_fc) = (3, 3): 0.81+0.49+0.25 + 1.69+0.49+0.36 = 4.09   6 weights, 15 MACs
    (m_conv, m_fc) = (3, 4): the same plus the zero-score fc weight  = 4.09   7 weights, 16 MACs
    (m_conv, m_fc) = (4, 2): 1.71 + 2.18                             = 3.89   6 weights, 18 MACs
    (m_conv, m_fc) = (2, 4): 1.30 + 2.54                             = 3.84   6 weights, 12 MACs

The optimum is 4.09. The LP relaxation fills the 1 weight and 3 MACs left over by (3, 3) with
¾ of the fourth conv weight (0.16·¾ = 0.12): its value 4.21 is the upper bound that ``falcon``
certifies (a certified gap of 0.12/4.21 = 2.85 %, although falcon's 4.09 is optimal). With
``--seed 1`` falcon keeps (3, 3) = 2.03 while the optimum is (4, 2) = 2.10: 3.3 % below, inside
its certified gap of 5.6 %.

The script prints the data, the declared Pyomo model (``problem.to_pyomo().pprint()``), solves
it exactly (``pyomo-highs`` — the very model printed — and the purpose-built ``exact``), fast
(``falcon``: the exact LP dual plus a rounding; its dual value is a certified upper bound), and
by enumerating all 2^12 = 4096 selections in numpy. The last line is machine-readable:
``RESULT {json}``.

    python examples/joint_ilp.py --seed 0
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from teaching import compare_and_finish, declared_model_text, parse_args  # examples/teaching.py

import pruneopt
from pruneopt import JointBudgetProblem

# (name, kind, out_channels, in_channels, kernel, input H (=W)); a Linear has kernel 0
LAYERS = [("conv", "Conv2d", 2, 1, 2, 3), ("fc", "Linear", 2, 2, 0, 1)]
KEEP_NNZ_COUNT = 7  # K
FLOP_BUDGET = 18.0  # F, MACs


def layer_table():
    """(names, number of weights, MACs per weight, std of the kaiming-like init) per layer."""
    names, sizes, costs, stds = [], [], [], []
    for name, kind, c_out, c_in, k, h_in in LAYERS:
        if kind == "Conv2d":
            h_out = h_in - k + 1  # stride 1, no padding
            sizes.append(c_out * c_in * k * k)
            costs.append(h_out * h_out)  # a conv weight is used once per output position
            fan_in = c_in * k * k
        else:
            sizes.append(c_out * c_in)
            costs.append(1)
            fan_in = c_in
        names.append(name)
        stds.append(np.sqrt(2.0 / fan_in))
    return names, np.array(sizes), np.array(costs, dtype=np.float64), np.array(stds)


def build(seed: int):
    names, sizes, costs, stds = layer_table()
    rng = np.random.default_rng(seed)
    w = np.round(rng.standard_normal(int(sizes.sum())) * np.repeat(stds, sizes), 1) + 0.0
    scores = np.round(w * w, 2)  # exact squares of one-decimal weights, as floats
    problem = JointBudgetProblem(
        scores=scores, group_ptr=np.concatenate(([0], np.cumsum(sizes))), flop_cost=costs,
        nnz_budget=KEEP_NNZ_COUNT, flop_budget=FLOP_BUDGET, names=tuple(names))
    return problem, w


def brute_force(problem: JointBudgetProblem):
    """Enumerate all 2^p selections (p ≤ 20): the best feasible objective and its x."""
    p = problem.num_items
    X = ((np.arange(2**p)[:, None] >> np.arange(p)) & 1).astype(bool)  # 2^p × p
    nnz = X.sum(axis=1)
    flops = X @ problem.item_cost
    value = X @ problem.scores
    ok = (nnz <= problem.nnz_budget) & (flops <= problem.flop_budget)
    best = int(np.flatnonzero(ok)[np.argmax(value[ok])])
    return float(value[best]), X[best], int(ok.sum())




def main(argv=None) -> int:
    args = parse_args(__doc__, argv)

    problem, w = build(args.seed)
    ptr, names = problem.group_ptr, problem.names

    print(f"=== Toy network (seed {args.seed}): layers, weights, scores s = w² ===")
    print(f"{'layer':<6} {'items':>6} {'MACs/weight':>12}  weights w_i (scores s_i)")
    for g, name in enumerate(names):
        a, b = int(ptr[g]), int(ptr[g + 1])
        pairs = "  ".join(f"{w[i]:+.1f}({problem.scores[i]:.2f})" for i in range(a, b))
        print(f"{name:<6} {f'{a}..{b - 1}':>6} {problem.flop_cost[g]:>12.0f}  {pairs}")
    print(f"dense: {problem.num_items} weights, {problem.total_flops:.0f} MACs;  "
          f"budgets: K = {problem.nnz_budget} weights, F = {problem.flop_budget:.0f} MACs")

    model = problem.to_pyomo()
    constraints = [c.local_name for c in model.component_objects(pyo.Constraint)]
    if not args.quiet:
        print("\n=== Declared model: Pyomo pprint of problem.to_pyomo() "
              "(objective 'score', constraints 'nnz' and 'flops') ===")
        print(declared_model_text(model))

    print("\n=== Solves ===")
    runs = {}
    for solver in ("pyomo-highs", "exact", "falcon"):
        runs[solver] = pruneopt.solve(problem, solver)
    bf_value, bf_x, n_feasible = brute_force(problem)
    print(f"{'solver':<12} {'kind':<11} {'status':<9} {'objective':>10} {'bound':>10} "
          f"{'proven':>6} {'seconds':>8}  kept per layer")
    for solver, r in runs.items():
        kind = "fast" if solver == "falcon" else "exact"
        counts = problem.group_counts(r.x).tolist()
        print(f"{solver:<12} {kind:<11} {r.status:<9} {r.objective:>10.4f} {r.bound:>10.4f} "
              f"{str(r.proven_optimal):>6} {r.seconds:>8.4f}  {dict(zip(names, counts))}")
    bf_counts = problem.group_counts(bf_x).tolist()
    print(f"{'brute force':<12} {'enumerate':<11} {'optimal':<9} {bf_value:>10.4f} "
          f"{bf_value:>10.4f} {'True':>6} {'':>8}  {dict(zip(names, bf_counts))}"
          f"  ({n_feasible} of {2**problem.num_items} selections feasible)")

    exact, fast = runs["pyomo-highs"], runs["falcon"]
    ev = problem.evaluate(fast.x)
    print(f"\nfalcon keeps items {np.flatnonzero(fast.x).tolist()}: "
          f"{ev.usage['nnz']:.0f} weights, {ev.usage['flops']:.0f} MACs")
    print(f"exact  keeps items {np.flatnonzero(exact.x).tolist()}: "
          f"{problem.evaluate(exact.x).usage['nnz']:.0f} weights, "
          f"{problem.evaluate(exact.x).usage['flops']:.0f} MACs")

    return compare_and_finish("joint_ilp", problem, args.seed, runs, exact="pyomo-highs",
                              other="exact", fast="falcon", bruteforce=bf_value,
                              constraints=constraints,
                              bound_what="falcon's LP dual value; needs no exact solver", digits=4)


if __name__ == "__main__":
    raise SystemExit(main())
