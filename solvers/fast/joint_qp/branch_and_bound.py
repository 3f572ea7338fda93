"""``exact`` for the full joint MIQP (a'): branch and bound on the certified dual bound.

    minimize Q(w)   s.t.  ‖w‖₀ ≤ K,  Σ_i c_{g(i)} 1[w_i ≠ 0] ≤ F          (JointQuadraticProblem)

**Proof argument.** A node of the search is a set of fixings (items forced in, items forced
out); the root has none, and branching on a free item i splits a node into "i in" and "i out",
so the leaves of any finished search partition the feasible supports. Each node gets a
certified lower bound LB_node of min Q over its supports (:mod:`~pruneopt.solvers.fast.
dual_bound`: the Fenchel dual of the restricted ridge, the LP dual of the two-row knapsack in
count space, explicit float64 rounding margins). A node is closed when LB_node ≥ UB − tol
(UB the best feasible objective found, tol = ``rel_gap``·|UB|, default 5e-10 — below the 1e-9
proof tolerance of :func:`~pruneopt.solvers.result.finalize`), or when it holds no support.
The returned bound is the minimum of UB and of the LBs of every closed and every open node,
which is a valid lower bound of the optimum at any moment (so also at a time limit).

**Reduced-cost fixing.** At a node with certificate (α, μ, ν), forcing a free item i to the
other side raises the LP bound by at least |v_i − t_i| (t_i = μ + νc_i, see
:func:`~pruneopt.solvers.fast.joint_qp.dual_bound.fixing_gains`); when LB_lp + |v_i − t_i| ≥
UB − tol no better support has i on the other side and i is fixed where the dual puts it
(v_i > t_i: in, else out). An item that no longer fits the node's budgets is fixed out.

**Node bounds** come from Frank–Wolfe on the perspective relaxation over the hull of the
node's integral supports (the knapsack subtracted exactly, in count space; above
``HULL_MAX_CLASSES`` cost classes over the LP, with the integer knapsack certified once per
node) started at the parent's point z (the root starts at the incumbent's support, where α is the backsolve's
residual), with the cut-off UB − tol: a node stops as soon as its bound prunes it.

**Incumbents.** The best of: the backsolve on magnitude pruning (the joint ILP on w̄²),
FALCON (``solvers/fast/falcon_qp.py``), and a start passed by the caller; then the integral
knapsack selections met by Frank–Wolfe (root and every node) and an exchange-move polish
(:func:`polish`). Every candidate support is grown to a maximal one (adding an index never
raises the restricted optimum) and evaluated by the exact backsolve
(:func:`~pruneopt.solvers.fast.joint_qp.backsolve.restricted_ridge`).

**Branching** on the fractional free item with the largest fractionality × leverage min(z_i, 1
− z_i)·‖r_i‖²/λ_i (a half-kept column of high leverage absorbs nearly as much of the residual
as a kept one: that is where the relaxation is loose — on the digits CNN the first-layer
weights; measured p = 1,000, n = 16: 13 nodes against 113 for the most fractional item), or,
when z is integral on the free items, on the item whose v is closest to its threshold t;
best-first on the parent's bound, deeper nodes first among equal keys. Items are not branched
on by class counts: the count structure enters through the bound, whose knapsack is solved in
count space (:mod:`~pruneopt.solvers.fast.joint_qp.count_knapsack`).

**Time limit.** The clock is checked between Frank–Wolfe iterations (each a few small solves),
between nodes and between polish moves; FALCON gets a share of the limit. A time limit returns
the best x with the certified bound and status ``time_limit``.
"""

from __future__ import annotations

import heapq
import math
import time

import numpy as np

from pruneopt.solvers.fast.joint_qp.backsolve import restricted_ridge
from pruneopt.solvers.fast.joint_qp.dual_bound import (
    Minorant,
    Node,
    certify,
    fixing_gains,
    frank_wolfe,
)

DEFAULT_REL_GAP = 5e-10
ROOT_FW = 300
NODE_FW = 15
# a node's Frank–Wolfe steps need only a rough line search: measured on the whole
# block-diagonal MLP, 2 regula falsi steps prove in 63 s, 6 (the root's) in 87 s
NODE_LINE_STEPS = 2
# Frank–Wolfe subtracts the integer knapsack at every iterate up to this many cost classes, and
# once per node above it. Measured (60 s limits): the digits CNN (3 classes) proves its whole
# network at n = 128 in 18.6 s with it at every iterate and not in 60 s once per node; random
# instances with 5, 8 and 11 classes (p = 2,000, n = 32) prove in 59, 40 and 37 s once per node
# but stop at gaps of 8e-5 - 9e-5 at every iterate (a 64-box count search per iterate).
HULL_MAX_CLASSES = 4


class _Incumbent:
    """The best feasible w found so far, every candidate evaluated by the backsolve."""

    def __init__(self, problem, deadline):
        self.problem = problem
        self.deadline = deadline
        p = problem.num_items
        self.w = np.zeros(p)
        self.q = problem.objective(self.w)
        self.tried: set[bytes] = set()
        self.backsolves = 0
        self.sources: dict[str, int] = {}
        self.source = "zero"

    def backsolve(self, support: np.ndarray) -> np.ndarray:
        P = self.problem
        self.backsolves += 1
        return restricted_ridge(P.X, P.w_bar, P.ridge, P.linear, support, P.block_ptr)

    def offer_support(self, support: np.ndarray, source: str, priority=None) -> bool:
        """Grow a feasible support to a maximal one, backsolve, keep if better."""
        P = self.problem
        s = np.asarray(support, dtype=bool)
        if not P.fits(s):
            return False
        s = maximal(P, s, priority)
        key = np.packbits(s).tobytes()
        if key in self.tried:
            return False
        self.tried.add(key)
        w = self.backsolve(s)
        q = P.objective(w)
        if q < self.q:
            self.w, self.q, self.source = w, q, source
            self.sources[source] = self.sources.get(source, 0) + 1
            return True
        return False

    def offer_w(self, w: np.ndarray, source: str) -> bool:
        P = self.problem
        if w is None or not P.is_feasible(w):
            return False
        return self.offer_support(w != 0.0, source, priority=np.abs(P.gradient(w)))


def maximal(problem, support: np.ndarray, priority=None) -> np.ndarray:
    """Grow a feasible support to a maximal one (no index can be added within both budgets):
    per class of equal MAC cost, in order of the class's best candidate, add its best
    candidates (by ``priority``, default |w̄|) while both budgets allow. One pass is maximal:
    a class cut short by the NNZ budget leaves none, one cut short by the FLOP budget can take
    no more later (the room only shrinks). Loops over classes only."""
    P = problem
    s = np.array(support, dtype=bool)
    nnz, flops = P.usage_of_support(s)
    K_left = P.nnz_budget - nnz
    F_left = P.flop_budget + 1e-9 * max(1.0, abs(P.flop_budget)) - flops
    if K_left <= 0:
        return s
    prio = np.abs(P.w_bar) if priority is None else np.asarray(priority, dtype=np.float64)
    cost = P.item_cost
    out = np.flatnonzero(~s)
    if out.size == 0:
        return s
    ucost, cls = np.unique(cost[out], return_inverse=True)
    order = np.lexsort((-prio[out], cls))  # by class, best first within a class
    out_sorted, cls_sorted = out[order], cls[order]
    starts = np.searchsorted(cls_sorted, np.arange(ucost.size))
    ends = np.searchsorted(cls_sorted, np.arange(ucost.size), side="right")
    best = prio[out_sorted[starts]]
    for d in np.argsort(-best, kind="stable").tolist():
        if K_left <= 0:
            break
        c = float(ucost[d])
        take = min(int(ends[d] - starts[d]), K_left, int(max(F_left, 0.0) // c))
        if take <= 0:
            continue
        s[out_sorted[starts[d]:starts[d] + take]] = True
        K_left -= take
        F_left -= take * c
    return s


def polish(problem, inc: _Incumbent, *, deadline: float | None, rounds: int = 20,
           trials: int = 24, candidates: int = 12) -> int:
    """Exchange moves on the incumbent's support: drop a kept weight with a small estimated
    loss, add a pruned one with a large estimated gain (per-weight diagonal Hessian estimates
    w_i²(λ + ‖x_i‖²)/2 and g_i²/(2(λ + ‖x_j‖²)), g = ∇Q), best pairs first, each move
    backsolved on the grown support; first improvement is taken. Returns the moves made."""
    P = problem
    if P.num_items == 0:
        return 0
    col = np.einsum("ji,ji->i", P.X, P.X) + P.ridge
    cost = P.item_cost
    moves = 0
    for _ in range(rounds):
        w = inc.w
        s = w != 0.0
        if not s.any() or s.all():
            break
        g = P.gradient(w)
        loss = 0.5 * w * w * col
        gain = 0.5 * g * g / col
        kept, out = np.flatnonzero(s), np.flatnonzero(~s)
        drop = kept[np.argsort(loss[kept], kind="stable")[:candidates]]
        add = out[np.argsort(-gain[out], kind="stable")[:candidates]]
        _nnz, flops = P.usage_of_support(s)
        room = P.flop_budget * (1 + 1e-9) + 1e-9 - flops
        pairs = [(gain[j] - loss[i], i, j) for i in drop.tolist() for j in add.tolist()
                 if cost[j] - cost[i] <= room]
        pairs.sort(reverse=True)
        improved = False
        for _score, i, j in pairs[:trials]:
            if deadline is not None and time.perf_counter() > deadline:
                return moves
            t = s.copy()
            t[i], t[j] = False, True
            if inc.offer_support(t, "polish", priority=gain):
                moves += 1
                improved = True
                break
        if not improved:
            break
    return moves


def _branch_item(model: Minorant, fix: np.ndarray, z: np.ndarray, cert) -> int:
    free = np.flatnonzero(fix == 0)
    if free.size == 0:
        return -1
    zf = z[free]
    frac = np.minimum(zf, 1.0 - zf)
    if frac.max() > 1e-6:
        # a fractional weight of high leverage is where the relaxation gains most from
        # splitting it (a half-kept column absorbs nearly as much residual as a kept one)
        key = np.where(frac > 1e-6, frac * model.leverage[free], -1.0)
        return int(free[np.argmax(key)])
    t = cert.mu + cert.nu * model.cost[free]
    amb = np.abs(cert.v[free] - t) / np.maximum(cert.v[free] + t, 1e-300)
    return int(free[np.argmin(amb)])


def _reduce(model: Minorant, node: Node, cert, cutoff: float, problem) -> tuple[Node, int]:
    """Reduced-cost fixing at a node; returns (node with the new fixings, items fixed).

    Items fixed by the bound cut away supports worth at least ``cutoff`` (not only those worth
    more than UB): the caller counts ``cutoff`` among the bounds of closed parts."""
    fix = node.fix
    gains = fixing_gains(model, node, cert)
    t = cert.mu + cert.nu * model.cost
    hit = (fix == 0) & (cert.lb_lp + gains >= cutoff)
    if not hit.any():
        # items that cannot fit the node's budgets any more are out
        too = (fix == 0) & ((node.K < 1) | (model.cost > node.F))
        if not too.any():
            return node, 0
        fix = fix.copy()
        fix[too] = -1
        return Node.of(model, fix), int(too.sum())
    fix = fix.copy()
    fix[hit & (cert.v > t)] = 1
    fix[hit & ~(cert.v > t)] = -1
    new = Node.of(model, fix)
    too = (fix == 0) & ((new.K < 1) | (model.cost > new.F))
    if too.any():
        fix[too] = -1
        new = Node.of(model, fix)
    return new, int(hit.sum() + too.sum())


def solve_bnb(problem, *, blas_threads: int | None = 1, **kwargs) -> dict:
    """Branch and bound; returns ``{"x", "bound", "status", "message", "info"}``.

    The search makes many small (n × n) solves, for which a multi-threaded BLAS is much
    slower than one thread on a busy machine (measured on a shared 2-core box: a 128 × 128
    solve 18 ms with 2 OpenBLAS threads, 0.3 ms with one); ``blas_threads`` limits BLAS
    for the duration (``threadpoolctl``, if installed; None leaves it alone).
    """
    if blas_threads is None:
        return _solve_bnb(problem, **kwargs)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return _solve_bnb(problem, **kwargs)
    with threadpool_limits(limits=int(blas_threads), user_api="blas"):
        return _solve_bnb(problem, **kwargs)


def _solve_bnb(problem, *, time_limit: float | None = None, rel_gap: float = DEFAULT_REL_GAP,
               shift: str = "scaled", start=None, use_falcon: bool = True,
               max_nodes: int | None = None, root_fw: int = ROOT_FW,
               node_fw: int = NODE_FW, node_line_steps: int = NODE_LINE_STEPS) -> dict:
    from pruneopt.solvers.deadline import Clock

    t0 = time.perf_counter()
    deadline = Clock(time_limit).deadline  # the solve's clock: started when solve was called
    P = problem
    p = P.num_items
    secs = {"incumbent": 0.0, "root": 0.0, "polish": 0.0, "tree": 0.0, "minorant": 0.0}
    info = {"nodes": 0, "fixed_root": 0, "fw_iterations": 0, "fw_solves": 0, "seconds": secs,
            "shift": shift}
    if p == 0:
        return {"x": np.zeros(0), "bound": 0.0, "status": "optimal", "message": "no weights",
                "info": info}

    def left() -> float:
        return math.inf if deadline is None else deadline - time.perf_counter()

    # ------------------------------------------------------------------ incumbents
    t = time.perf_counter()
    inc = _Incumbent(P, deadline)
    from pruneopt.solvers.registry import solve

    try:
        mag = solve(P.joint_ilp(P.w_bar * P.w_bar), "exact",
                    time_limit=None if deadline is None else max(0.05 * left(), 0.05))
        if mag.x is not None and mag.feasible:
            inc.offer_support(np.asarray(mag.x, dtype=bool), "magnitude")
    except (RuntimeError, ValueError):
        pass
    if start is not None:
        inc.offer_w(P.canonical(start), "start")
    if use_falcon and left() > 0:
        try:
            fal = solve(P, "falcon", time_limit=None if deadline is None
                        else max(0.15 * left(), 0.05))
            inc.offer_w(fal.x, "falcon")
        except (RuntimeError, ValueError):
            pass
    secs["incumbent"] = time.perf_counter() - t
    t = time.perf_counter()
    model = Minorant(P, shift)
    secs["minorant"] = time.perf_counter() - t
    info["shifted_blocks"] = model.shifted_blocks
    info["blocks"] = model.B
    info["classes"] = model.D
    bracket = "hull" if model.D <= HULL_MAX_CLASSES else "end"
    info["bracket"] = bracket

    def tol() -> float:
        return rel_gap * max(abs(inc.q), 1e-300)

    # ------------------------------------------------------------------ root
    # Frank–Wolfe from the incumbent's support, then reduced-cost fixing, repeated while the
    # fixing shrinks the root (a smaller root has a better bound); a share of the time limit
    t = time.perf_counter()
    closed_min = math.inf  # min LB over closed parts of the tree (only those below UB matter)
    root = Node.of(model, np.zeros(p, dtype=np.int8))
    root_deadline = None if deadline is None else time.perf_counter() + 0.3 * left()
    z = (inc.w != 0.0).astype(np.float64)
    fw = None
    rounds = 0
    fixed_total = 0
    while True:
        rounds += 1
        fw = frank_wolfe(model, root, z, cutoff=inc.q - tol(), max_iter=root_fw,
                         deadline=root_deadline, bracket=bracket)
        info["fw_iterations"] += fw.iterations
        info["fw_solves"] += fw.solves
        for sel in fw.selects[-4:]:
            inc.offer_support(sel, "root-knapsack", priority=fw.best.v)
        z = fw.z
        if fw.best.lb >= inc.q - tol():
            break
        root2, nfix = _reduce(model, root, fw.best, inc.q - tol(), P)
        if nfix:
            closed_min = min(closed_min, inc.q - tol())
        if nfix == 0 or root2.empty or rounds >= 8:
            break
        fixed_total += nfix
        root = root2
        if root_deadline is not None and time.perf_counter() > root_deadline:
            break
    info["root_rounds"] = rounds
    # rounding of the relaxation's z: the knapsack on z (ties by v)
    if left() > 0:
        zr = np.where(root.fix == 1, 1.0, np.where(root.fix == -1, 0.0, fw.z))
        zr = zr + 1e-9 * fw.best.v / max(float(fw.best.v.max()), 1e-300)
        try:
            rz = solve(P.joint_ilp(np.maximum(zr, 0.0)), "exact",
                       time_limit=None if deadline is None else max(0.05 * left(), 0.05))
            if rz.x is not None and rz.feasible:
                inc.offer_support(np.asarray(rz.x, dtype=bool), "root-rounding",
                                  priority=fw.best.v)
        except (RuntimeError, ValueError):
            pass
    secs["root"] = time.perf_counter() - t
    t = time.perf_counter()
    polish(P, inc, deadline=None if deadline is None
           else time.perf_counter() + max(0.1 * left(), 0.0))
    secs["polish"] = time.perf_counter() - t
    root_lb = fw.best.lb
    info["root_bound"] = root_lb
    info["root_gap"] = (inc.q - root_lb) / max(abs(inc.q), 1e-300)
    info["root_fw"] = fw.stopped

    # ------------------------------------------------------------------ tree
    t = time.perf_counter()
    counter = 0
    heap: list = []
    status = "optimal"
    cutoff = inc.q - tol()
    if root_lb < cutoff:
        node, nfix = _reduce(model, root, fw.best, cutoff, P)
        if nfix:
            closed_min = min(closed_min, cutoff)
        info["fixed_root"] = int(np.count_nonzero(node.fix))
        heapq.heappush(heap, (root_lb, 0, counter, node.fix, fw.z.astype(np.float16)))
    else:
        closed_min = min(closed_min, root_lb)
    max_open = 0
    while heap:
        cutoff = inc.q - tol()
        if heap[0][0] >= cutoff:
            closed_min = min(closed_min, heap[0][0])
            heapq.heappop(heap)
            continue
        if left() <= 0 or (max_nodes is not None and info["nodes"] >= max_nodes):
            status = "time_limit"
            break
        key, negdepth, _, fix, zc = heapq.heappop(heap)
        info["nodes"] += 1
        node = Node.of(model, fix)
        if node.empty:
            continue  # no support: contributes nothing to the bound
        res = frank_wolfe(model, node, zc.astype(np.float64), cutoff=cutoff, max_iter=node_fw,
                          deadline=deadline, line_steps=node_line_steps, bracket=bracket)
        info["fw_iterations"] += res.iterations
        info["fw_solves"] += res.solves
        cert = res.best
        lb = max(cert.lb, key)
        if lb >= cutoff:
            closed_min = min(closed_min, lb)
            continue
        # incumbent from the node's integral knapsack selection
        inc.offer_support(cert.select, "node-knapsack", priority=cert.v)
        cutoff = inc.q - tol()
        if lb >= cutoff:
            closed_min = min(closed_min, lb)
            continue
        node2, nfix = _reduce(model, node, cert, cutoff, P)
        if nfix:
            closed_min = min(closed_min, cutoff)
        if node2.empty:
            continue
        if node2 is not node and not np.array_equal(node2.fix, node.fix):
            cert = certify(model, node2, cert.A)
            lb = max(lb, cert.lb)
            if lb >= cutoff:
                closed_min = min(closed_min, lb)
                continue
        if not np.any(node2.fix == 0):
            # a leaf: a single support; its value is the backsolve's (certified above)
            inc.offer_support(node2.fix == 1, "leaf")
            cutoff = inc.q - tol()
            if lb < cutoff:
                # the leaf's own certificate at its backsolve's residual is exact up to margins
                w_leaf = inc.backsolve(node2.fix == 1)
                leaf_cert = certify(model, node2, model.alpha_of_weights(w_leaf))
                lb = max(lb, leaf_cert.lb)
            closed_min = min(closed_min, lb)
            continue
        i = _branch_item(model, node2.fix, res.z, cert)
        z16 = res.z.astype(np.float16)
        for val in (1, -1):
            child = node2.fix.copy()
            child[i] = val
            counter += 1
            heapq.heappush(heap, (lb, negdepth - 1, counter, child, z16))
        max_open = max(max_open, len(heap))
    secs["tree"] = time.perf_counter() - t
    open_min = min((h[0] for h in heap), default=math.inf)
    bound = min(inc.q, closed_min, open_min)
    if status != "time_limit":
        status = "optimal" if bound >= inc.q - tol() * 1.0000001 else "feasible"
    bound = max(bound, P.lower_bound()) if math.isfinite(bound) else P.lower_bound()
    bound = min(bound, inc.q)
    info.update(max_open=max_open, open_nodes=len(heap), backsolves=inc.backsolves,
                incumbent_source=inc.source, incumbent_improvements=dict(inc.sources),
                seconds_total=time.perf_counter() - t0)
    msg = (f"branch and bound: {info['nodes']} nodes, root gap {info['root_gap']:.3g}, "
           f"{info['fixed_root']} items fixed at the root, {model.D} cost classes")
    return {"x": inc.w, "bound": bound, "status": status, "message": msg, "info": info}
