"""The full joint problem (a'): a mixed-integer QP on the quadratic model of a 12-weight toy net.

The toy network is the one of ``joint_ilp.py`` (no torch, the shapes are written down):

    input 1×3×3 ─ conv: Conv2d(1→2, 2×2, no bias) ─ 2×2×2 ─ global avg-pool ─ fc: Linear(2→2)

    layer  weights (items)    MACs per weight
    conv   8  (items 0..7)    H_out·W_out = 4
    fc     4  (items 8..11)   1                   dense: 12 weights, 36 MACs

Without activations the net is out = V·(W·P(x)), with P(x) the 2×2 average of the four 2×2
patches of x; for one sample the squared loss ½‖out − y‖² has the gradient

    ∂/∂V[o,c] = r_o z_c,   ∂/∂W[c,a,b] = (Vᵀr)_c P[a,b],     z = W·P(x),  r = out − y,

computed here in numpy for n = 6 random inputs x_j and targets y_j (one decimal each). The rows
of X (6 × 12) are these per-sample gradients at the dense weights w̄ (XᵀX/n is the empirical
Fisher). With d = w − w̄, a ridge λ = 0.01 and no first-order term (a = 0), the program is

    minimize    Q(w) = ½‖X d‖² + (λ/2)‖d‖²                  = ½ dᵀ(XᵀX + λI)d
    subject to  ‖w‖₀ ≤ K = 7                                              (nnz)
                4·#{i ≤ 7 : w_i ≠ 0} + 1·#{i ≥ 8 : w_i ≠ 0} ≤ F = 18     (flops)

With ``--seed 0`` the dense weights are (the same draws as ``joint_ilp.py``)

    w̄ = (+0.1, -0.1, +0.5, +0.1, -0.4, +0.3, +0.9, +0.7 | -0.7, -1.3, -0.6, 0.0)

and Q(0) = ½ w̄ᵀ(XᵀX + λI)w̄ (pruning everything) is printed with the data. For a fixed support
S the best w is a ridge solve ("backsolve"): d_S = H_SS⁻¹ H_{S,S̄} w̄_S̄ with H = XᵀX + λI and
w = 0 off S, so the exact optimum is the best backsolve over the feasible supports — which the
script checks by enumerating all 2^12 = 4096 supports in numpy.

The declared model (``problem.to_pyomo()``) linearises the support with binaries z_i and
rigorous big-M bounds |w_i| ≤ M_i z_i (rows ``upper``/``lower``), writes the Fisher term with
residual variables r_j = Σ_i X_ji (w_i − w̄_i) (rows ``residual``) and the budgets on z (rows
``nnz`` and ``flops``).

Solvers: ``exact`` (every maximal feasible support, backsolved, for p ≤ 16), ``oa-highs``
(outer approximation: a HiGHS MILP master with gradient cuts of Q) and ``falcon`` (FALCON's
discrete first-order method with the joint ILP as projection and the backsolve; its bound is
the separable lower bound: the Fisher term dropped, the rest minimised exactly — valid but weak).
For seed 0 falcon stops at a support whose Q is about 9 % above the optimum. The last line is
machine-readable: ``RESULT {json}``.

    python examples/joint_qp.py --seed 0
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from teaching import compare_and_finish, declared_model_text, parse_args  # examples/teaching.py

import pruneopt
from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem

N_SAMPLES = 6
RIDGE = 0.01  # λ
KEEP_NNZ_COUNT = 7  # K
FLOP_BUDGET = 18.0  # F, MACs
COSTS = np.array([4.0, 1.0])  # MACs per weight: conv (2×2 output positions), fc
SIZES = np.array([8, 4])
STDS = np.array([np.sqrt(2.0 / 4), np.sqrt(2.0 / 2)])  # kaiming: √(2 / fan_in)


def per_sample_gradients(w: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Rows: ∇ of ½‖V·(W·P(x)) − y‖² at w = (W flattened as (2,1,2,2), V as (2,2))."""
    W, V = w[:8].reshape(2, 4), w[8:].reshape(2, 2)
    rows = []
    for x, y in zip(xs, ys):
        # P[a,b] = mean over the 2×2 output positions (u,v) of x[u+a, v+b]
        P = np.array([[x[a:a + 2, b:b + 2].mean() for b in range(2)] for a in range(2)])
        z = W @ P.ravel()
        r = V @ z - y
        rows.append(np.concatenate([np.outer(V.T @ r, P.ravel()).ravel(), np.outer(r, z).ravel()]))
    return np.array(rows)


def build(seed: int):
    rng = np.random.default_rng(seed)
    w_bar = np.round(rng.standard_normal(int(SIZES.sum())) * np.repeat(STDS, SIZES), 1) + 0.0
    xs = np.round(rng.standard_normal((N_SAMPLES, 3, 3)), 1)
    ys = np.round(rng.standard_normal((N_SAMPLES, 2)), 1)
    X = per_sample_gradients(w_bar, xs, ys)
    problem = JointQuadraticProblem(
        X=X, w_bar=w_bar, ridge=RIDGE, group_ptr=np.concatenate(([0], np.cumsum(SIZES))),
        flop_cost=COSTS, nnz_budget=KEEP_NNZ_COUNT, flop_budget=FLOP_BUDGET,
        names=("conv", "fc"))
    return problem


def brute_force(problem: JointQuadraticProblem):
    """Every support S ⊆ {0..p-1} that meets both budgets, backsolved: min Q and its w."""
    p, wb = problem.num_items, problem.w_bar
    H = problem.X.T @ problem.X + problem.ridge * np.eye(p)
    S = ((np.arange(2**p)[:, None] >> np.arange(p)) & 1).astype(bool)
    ok = (S.sum(axis=1) <= problem.nnz_budget) & (S @ problem.item_cost <= problem.flop_budget)
    best, best_w = np.inf, None
    for s in S[ok]:
        d = -wb.copy()  # w = 0 off the support
        if s.any():
            d[s] = np.linalg.solve(H[np.ix_(s, s)], H[np.ix_(s, ~s)] @ wb[~s])
        q = 0.5 * d @ H @ d
        if q < best:
            best, best_w = q, wb + d
    return float(best), best_w, int(ok.sum())




def main(argv=None) -> int:
    args = parse_args(__doc__, argv)

    problem = build(args.seed)
    ptr, names, wb = problem.group_ptr, problem.names, problem.w_bar

    print(f"=== Toy network (seed {args.seed}): dense weights w̄ and the quadratic model ===")
    print(f"{'layer':<6} {'items':>6} {'MACs/weight':>12}  w̄_i")
    for g, name in enumerate(names):
        a, b = int(ptr[g]), int(ptr[g + 1])
        print(f"{name:<6} {f'{a}..{b - 1}':>6} {problem.flop_cost[g]:>12.0f}  "
              + "  ".join(f"{wb[i]:+.1f}" for i in range(a, b)))
    print(f"X: {problem.num_samples} per-sample gradients × {problem.num_items} weights "
          f"(rows rounded to 2 decimals for display):")
    for j, row in enumerate(problem.X):
        print(f"  x_{j} = [" + " ".join(f"{v:+.2f}" for v in row) + "]")
    print(f"ridge λ = {problem.ridge},  Q(w̄) = 0,  Q(0) = {problem.objective(np.zeros(12)):.6f}"
          f";  budgets: K = {problem.nnz_budget} weights, F = {problem.flop_budget:.0f} MACs")

    model = problem.to_pyomo()
    constraints = [c.local_name for c in model.component_objects(pyo.Constraint)]
    if not args.quiet:
        print("\n=== Declared model: Pyomo pprint of problem.to_pyomo() (objective 'loss'; "
              "constraints 'residual', 'upper', 'lower', 'nnz', 'flops'; trimmed) ===")
        print(declared_model_text(model))

    print("\n=== Solves ===")
    runs = {solver: pruneopt.solve(problem, solver) for solver in ("exact", "oa-highs", "falcon")}
    bf_value, bf_w, n_feasible = brute_force(problem)
    print(f"{'solver':<12} {'kind':<11} {'status':<9} {'objective':>10} {'bound':>10} "
          f"{'proven':>6} {'seconds':>8}  support")
    for solver, r in runs.items():
        kind = "fast" if solver == "falcon" else "exact"
        print(f"{solver:<12} {kind:<11} {r.status:<9} {r.objective:>10.6f} {r.bound:>10.6f} "
              f"{str(r.proven_optimal):>6} {r.seconds:>8.4f}  "
              f"{np.flatnonzero(r.x).tolist()}")
    print(f"{'brute force':<12} {'enumerate':<11} {'optimal':<9} {bf_value:>10.6f} "
          f"{bf_value:>10.6f} {'True':>6} {'':>8}  {np.flatnonzero(bf_w).tolist()}"
          f"  ({n_feasible} of {2**problem.num_items} supports feasible)")

    exact, fast = runs["exact"], runs["falcon"]
    print("\nw (exact) = [" + " ".join(f"{v:+.3f}" for v in exact.x) + "]")
    print("w (fast)  = [" + " ".join(f"{v:+.3f}" for v in fast.x) + "]")

    return compare_and_finish("joint_qp", problem, args.seed, runs, exact="exact",
                              other="oa-highs", fast="falcon", bruteforce=bf_value,
                              constraints=constraints,
                              bound_what="the separable lower bound, Fisher term dropped", digits=6)


if __name__ == "__main__":
    raise SystemExit(main())
