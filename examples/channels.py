"""Structured channel selection with bilinear FLOPs on a tiny residual CNN (traced by torch.fx).

The toy network (PyTorch, no biases), input 1×6×6:

    h = relu(conv1(x))          conv1: Conv2d(1→4, 3×3, padding 1)             → 4×6×6
    h = h + relu(conv2(h))      conv2: Conv2d(4→4, 3×3, padding 1)  (residual) → 4×6×6
    h = relu(conv3(h))          conv3: Conv2d(4→6, 3×3, stride 2, padding 1)    → 6×3×3
    y = fc(mean_hw(h))          fc:    Linear(6→3)                              → 3 classes

``pruneopt.models.channels.channel_problem`` traces it with torch.fx. The residual add
ties the outputs of conv1 and conv2 into one group A (4 channels, removed together); conv3's
outputs are group B (6 channels); the fc outputs (3 classes) are fixed. Keeping k_A and k_B
channels costs, in MACs per sample (a conv costs K²·H_out·W_out·k_in·k_out):

    conv1: 9·36·1·k_A = 324 k_A        conv2: 9·36·k_A·k_A = 324 k_A²   (a self-edge A→A)
    conv3: 9·9·k_A·k_B = 81 k_A k_B    fc:    1·k_B·3      = 3 k_B

    FLOPs(k) = 324 k_A + 3 k_B + 324 k_A² + 81 k_A k_B,   dense (4, 6): 8442 MACs

Scores are the L1 norms of the output filters (``l1``; group A sums conv1's and conv2's filter
i), rounded to 2 decimals; V_g(k) is the sum of the k largest scores of group g. With a budget
of 30 % of the dense MACs (F = 2532.6) and min-keep 1 the program (DESIGN §2c) is

    maximize    V_A(k_A) + V_B(k_B)
    subject to  324 k_A + 3 k_B + 324 k_A² + 81 k_A k_B ≤ 2532.6        (flops)
                1 ≤ k_A ≤ 4,  1 ≤ k_B ≤ 6,  k_C = 3 (fixed, score 0)

With ``--seed 0`` (``torch.manual_seed(0)``, PyTorch's default init) the scores are
A = (4.22, 4.73, 4.03, 5.23) and B = (2.46, 2.91, 3.15, 2.15, 3.42, 3.87). Because conv2 costs
324 k_A², k_A is what the budget bites on: (k_A, k_B) = (1, 6) is worth 5.23 + 17.96 = 23.19
and costs 324 + 18 + 324 + 486 = 1152 MACs; (2, 3) fits (2439 MACs) but is worth only 20.40;
(2, 4) costs 2604 > 2532.6, and k_A = 3 costs 972 + 2916 = 3888 on its own. The optimum is
23.19 at (1, 6), well inside the budget.

The declared model is P1, the layered-graph MILP (``problem.to_pyomo()``): one-hot count
variables y[g,k] (rows ``one_count``), edge variables e[p,i,j] for the coupled pair (A, B)
whose marginals are the y's (rows ``edge_left``/``edge_right``), and the FLOP row ``flops``
linear in y and e. Solvers: ``pyomo-highs`` (HiGHS on that very model), ``exact``
(purpose-built), ``fast`` (Lagrangian relaxation with a DP along the network for each
multiplier; its dual value is a certified upper bound), and a brute force over all 2^13 keep
vectors z in numpy using the hand-written FLOPs formula above. Finally the exact answer is
applied by physically shrinking the model, and its MACs are measured with ``FlopCounterMode``.
The last line is machine-readable: ``RESULT {json}``.

    python examples/channels.py --seed 0
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import torch
from teaching import compare_and_finish, declared_model_text, parse_args  # examples/teaching.py
from torch import nn

import pruneopt
from pruneopt.models.channel_importance import channel_scores
from pruneopt.models.channels import build_channel_graph, channel_problem
from pruneopt.models.costs import flop_counter_macs
from pruneopt.models.shrink import shrink_model

KEEP_FLOPS = 0.3


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(6, 3, bias=False)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = h + torch.relu(self.conv2(h))  # the residual add ties conv1's and conv2's channels
        h = torch.relu(self.conv3(h))
        return self.fc(h.mean(dim=(2, 3)))


def hand_flops(k_a, k_b):
    """MACs of the toy net with k_A, k_B channels kept, counted by hand from the shapes."""
    return 9 * 36 * 1 * k_a + 9 * 36 * k_a * k_a + 9 * 9 * k_a * k_b + 1 * k_b * 3


def build(seed: int):
    torch.manual_seed(seed)
    model = TinyResNet().eval()
    x = torch.zeros(1, 1, 6, 6)
    graph = build_channel_graph(model, x)
    scores = np.round(channel_scores(model, graph, "l1"), 2)
    problem, graph = channel_problem(model, x, scores, keep_flops=KEEP_FLOPS, graph=graph)
    return model, x, graph, problem


def brute_force(problem):
    """Every keep vector z ∈ {0,1}^N: the best feasible Σ s·z, FLOPs from ``hand_flops``."""
    N, ptr = problem.num_channels, problem.channel_ptr
    Z = ((np.arange(2**N)[:, None] >> np.arange(N)) & 1).astype(bool)
    k = np.stack([Z[:, ptr[g]:ptr[g + 1]].sum(axis=1) for g in range(problem.num_groups)], 1)
    ok = np.all(k >= problem.min_keep, axis=1) & (
        hand_flops(k[:, 0], k[:, 1]) <= problem.flop_budget)
    value = Z @ problem.scores
    best = int(np.flatnonzero(ok)[np.argmax(value[ok])])
    return float(value[best]), Z[best], int(ok.sum())




def main(argv=None) -> int:
    args = parse_args(__doc__, argv)

    torch.set_num_threads(1)
    model, x, graph, problem = build(args.seed)
    ptr, names = problem.channel_ptr, problem.names

    print(f"=== Tiny residual CNN (seed {args.seed}): channel groups traced by torch.fx ===")
    print(f"{'group':<16} {'channels':>8} {'min-keep':>8}  scores (L1 filter norms)")
    for g, name in enumerate(names):
        s = problem.scores[ptr[g]:ptr[g + 1]]
        note = "  (fixed: " + graph.fixed_reason[g] + ")" if graph.fixed[g] else ""
        print(f"{name:<16} {problem.group_sizes[g]:>8} {problem.min_keep[g]:>8}  "
              + " ".join(f"{v:.2f}" for v in s) + note)
    terms = [f"{problem.const:g}"] if problem.const else []
    terms += [f"{b:g}·k{g}" for g, b in enumerate(problem.linear_coef) if b]
    terms += [f"{a:g}·k{g}·k{h}" for (g, h), a in zip(problem.edges.tolist(), problem.edge_coef)]
    print("FLOPs(k) = " + " + ".join(terms) + "   (k0 = k_A, k1 = k_B; traced)")
    grid = np.array([[a, b, 3] for a in range(5) for b in range(7)])  # k_C = 3: fixed
    agree = bool(np.all(problem.flops_of_counts(grid) == hand_flops(grid[:, 0], grid[:, 1])))
    print(f"traced coefficients == hand count 324kA + 3kB + 324kA² + 81kA·kB on all k: {agree}")
    print(f"dense: {problem.dense_flops:.0f} MACs;  budget F = {KEEP_FLOPS} × dense = "
          f"{problem.flop_budget:.1f} MACs")
    print("value of each count pair V_A(k_A) + V_B(k_B) (* = within the budget):")
    print("  k_A\\k_B " + "".join(f"{b:>9}" for b in range(1, 7)))
    for a in range(1, 5):
        cells = []
        for b in range(1, 7):
            k = np.array([a, b, 3])
            mark = "*" if problem.counts_feasible(k) else " "
            cells.append(f"{problem.value_of_counts(k):>8.2f}{mark}")
        print(f"  {a:>7} " + "".join(cells))

    model_p1 = problem.to_pyomo()
    constraints = [c.local_name for c in model_p1.component_objects(pyo.Constraint)]
    if not args.quiet:
        print("\n=== Declared model: Pyomo pprint of problem.to_pyomo() (P1, layered graph; "
              "objective 'value'; constraints 'one_count', 'edge_left', 'edge_right', 'flops'; "
              "trimmed) ===")
        print(declared_model_text(model_p1))

    print("\n=== Solves ===")
    runs = {solver: pruneopt.solve(problem, solver) for solver in ("pyomo-highs", "exact", "fast")}
    bf_value, bf_z, n_feasible = brute_force(problem)
    print(f"{'solver':<12} {'kind':<11} {'status':<9} {'objective':>10} {'bound':>10} "
          f"{'proven':>6} {'seconds':>8}  counts k")
    for solver, r in runs.items():
        kind = "fast" if solver == "fast" else "exact"
        print(f"{solver:<12} {kind:<11} {r.status:<9} {r.objective:>10.4f} {r.bound:>10.4f} "
              f"{str(r.proven_optimal):>6} {r.seconds:>8.4f}  {problem.counts(r.x).tolist()}")
    print(f"{'brute force':<12} {'enumerate':<11} {'optimal':<9} {bf_value:>10.4f} "
          f"{bf_value:>10.4f} {'True':>6} {'':>8}  {problem.counts(bf_z).tolist()}"
          f"  ({n_feasible} of {2**problem.num_channels} keep vectors feasible)")

    exact = runs["pyomo-highs"]
    predicted = problem.flops_of_counts(problem.counts(exact.x))
    shrunk = shrink_model(model, graph, exact.x, example_input=x)
    measured = flop_counter_macs(shrunk, x)
    print(f"\nshrunk model (exact answer): FlopCounterMode/2 = {measured} MACs, "
          f"predicted FLOPs(k) = {predicted:.0f}, budget {problem.flop_budget:.1f}")

    return compare_and_finish("channels", problem, args.seed, runs, exact="pyomo-highs",
                              other="exact", fast="fast", bruteforce=bf_value,
                              constraints=constraints,
                              bound_what="the Lagrangian dual value", digits=4,
                              extra={"macs_measured": int(measured), "macs_predicted": predicted})


if __name__ == "__main__":
    raise SystemExit(main())
