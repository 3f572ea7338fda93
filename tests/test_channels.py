"""Structured channel selection: data, evaluation, exchange format, every solver against brute
force (counts and, on the tiniest, all z), fast bounds, baselines, collapse.

The result contract of every channel solver (fields, infeasible instances, time limits) is in
tests/test_solver_contract.py."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import all_selections, score_values
from hypothesis import given, settings
from hypothesis import strategies as st
from solver_test_helpers import brute_counts
from solver_test_helpers import make_channels as make

import pruneopt
from pruneopt.formulations.channels.generate import SHAPES, generate_channels
from pruneopt.formulations.channels.problem import ChannelProblem
from pruneopt.formulations.network_shapes import layer_arrays, resnet20, resnet50
from pruneopt.solvers.crosscheck import crosscheck
from pruneopt.solvers.fast.channels.chain_dp import chain_order
from pruneopt.solvers.fast.channels.elimination import CountElimination
from pruneopt.solvers.registry import solver_specs

SPECS = {s.name: s for s in solver_specs("channels")}
AVAILABLE = pruneopt.available_solvers("channels")
EXACT = [n for n in AVAILABLE if SPECS[n].exact and n != "dp"]  # dp: chains only
HEURISTIC = [n for n in AVAILABLE if not SPECS[n].exact]


# ------------------------------------------------------------------------------------ brute force
def brute_z(p: ChannelProblem):
    """The optimum over all 2^N selections z (tiny N only)."""
    Z = all_selections(p.num_channels)
    member = np.zeros((p.num_channels, p.num_groups))
    member[np.arange(p.num_channels), np.repeat(np.arange(p.num_groups), p.group_sizes)] = 1
    K = (Z.astype(float) @ member).astype(np.int64)
    ok = p.counts_feasible(K)
    if not ok.any():
        return None
    return float(np.max(np.where(ok, Z.astype(float) @ p.scores, -np.inf)))


def close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


# ------------------------------------------------------------------------------------ strategy
@st.composite
def tiny_channel_problems(draw, chain: bool = False, max_groups: int = 4,
                          max_channels: int = 4) -> ChannelProblem:
    """Tiny instances: ties and zero scores, self-edges, parallel edges, cycles (DAG mode),
    min-keep 0..n_g, collapsible blocks, budgets from below the least FLOPs to above dense."""
    G = draw(st.integers(1, max_groups))
    sizes = draw(st.lists(st.integers(1, max_channels), min_size=G, max_size=G))
    N = sum(sizes)
    scores = draw(st.lists(score_values, min_size=N, max_size=N))
    if chain:
        edges = []
        for g in range(G - 1):
            if draw(st.integers(0, 4)) > 0:  # a missing link splits the chain in two paths
                edges.append((g, g + 1) if draw(st.booleans()) else (g + 1, g))
        if G and draw(st.booleans()):
            h = draw(st.integers(0, G - 1))
            edges.append((h, h))  # a self-edge keeps it a chain
        if edges and draw(st.booleans()):
            edges.append(edges[0])  # a parallel edge
    else:
        edges = draw(st.lists(st.tuples(st.integers(0, G - 1), st.integers(0, G - 1)),
                              max_size=2 * G))
    coef = draw(st.lists(st.integers(0, 30), min_size=len(edges), max_size=len(edges)))
    b = draw(st.lists(st.integers(0, 30), min_size=G, max_size=G))
    c0 = draw(st.integers(0, 20))
    min_keep = [draw(st.integers(0, n)) for n in sizes]
    blocks = [-1] * G
    if G >= 2 and draw(st.booleans()):
        if chain:  # a contiguous run of the chain
            length = draw(st.integers(1, G))
            first = draw(st.integers(0, G - length))
            for g in range(first, first + length):
                blocks[g] = 0
        else:
            raw = draw(st.lists(st.integers(-1, 1), min_size=G, max_size=G))
            ids = sorted({r for r in raw if r >= 0})
            blocks = [ids.index(r) if r >= 0 else -1 for r in raw]
    p = make(sizes, scores, edges, coef, b, float(c0), 0.0, min_keep, blocks)
    lo = p.flops_of_counts(p.min_counts)
    hi = p.dense_flops
    if draw(st.integers(0, 9)) == 0:  # now and then a budget below the least FLOPs
        F = float(draw(st.integers(max(int(lo) - 5, 0), int(lo))))
    else:
        F = draw(st.one_of(st.integers(int(math.ceil(lo)), int(hi) + 5).map(float),
                           st.floats(lo, hi + 5.0, allow_nan=False, allow_infinity=False,
                                     allow_subnormal=False)))
    return p.replace(flop_budget=F)


def check_against_brute(p: ChannelProblem, solvers, **options):
    opt, _ = brute_counts(p)
    for name in solvers:
        r = pruneopt.solve(p, name, **options.get(name, {}))
        assert (r.status == "optimal") == r.proven_optimal, (name, r)
        if opt is None:
            assert r.status == "infeasible" and r.x is None, (name, r.status, r.message)
            continue
        assert r.feasible and p.is_feasible(r.x), (name, r.message)
        assert r.objective <= opt + 1e-9 * max(1.0, opt), (name, r.objective, opt)
        assert r.bound >= opt - 1e-9 * max(1.0, opt), (name, r.bound, opt, r.message)
        if SPECS[name].exact:
            assert r.proven_optimal and close(r.objective, opt), (name, r.objective, opt,
                                                                   r.bound, r.message)
    return opt


# ------------------------------------------------------------------------------------ data
@pytest.fixture
def hand():
    # groups: 0 (2 ch), 1 (3 ch), 2 (2 ch); conv 0->1 (a=4), conv 1->2 (a=2), self 2 (a=1)
    return make([2, 3, 2], scores=[3.0, 1.0, 2.0, 2.0, 5.0, 4.0, 0.0],
                edges=[(0, 1), (1, 2), (2, 2)], coef=[4.0, 2.0, 1.0], b=[10.0, 0.0, 3.0],
                c0=7.0, F=60.0, names=["conv1", "conv2", "fc"])


def test_counts_flops_values_and_selection(hand):
    p = hand
    assert p.num_groups == 3 and p.num_channels == 7 and p.num_edges == 3
    assert p.group_sizes.tolist() == [2, 3, 2]
    k = np.array([1, 2, 1])
    # 7 + 10·1 + 3·1 + 4·1·2 + 2·2·1 + 1·1·1
    assert p.flops_of_counts(k) == 7 + 10 + 3 + 8 + 4 + 1
    assert p.dense_flops == 7 + 20 + 6 + 4 * 6 + 2 * 6 + 4
    # V_1(2): the two largest of [2, 2, 5] = 7; ties keep the lower index first
    assert p.value_of_counts(k) == 3.0 + 7.0 + 4.0
    z = p.selection_from_counts(k)
    assert z.tolist() == [True, False, True, False, True, True, False]
    assert p.counts(z).tolist() == k.tolist()
    ev = p.evaluate(z)
    assert ev.objective == 14.0
    assert ev.usage == {"flops": 33.0, "min_keep_violation": 0.0}
    assert ev.limits == {"flops": 60.0, "min_keep_violation": 0.0}
    # batched counts
    K = np.array([[1, 2, 1], [2, 3, 2]])
    assert p.flops_of_counts(K).tolist() == [33.0, p.dense_flops]
    assert p.value_of_counts(K).tolist() == [14.0, 17.0]
    # a z that is not top-k: objective is Σ s·z
    z2 = np.array([0, 1, 1, 0, 0, 1, 0], dtype=bool)
    assert p.evaluate(z2).objective == 1.0 + 2.0 + 4.0
    assert p.canonical(z2.astype(float)).dtype == np.bool_
    assert p.pairs.tolist() == [[0, 1], [1, 2]] and p.self_coef.tolist() == [0.0, 0.0, 1.0]


def test_min_keep_and_collapse_semantics():
    p = make([2, 2, 2], edges=[(0, 1), (1, 2)], coef=[1, 1], min_keep=[1, 2, 1],
             blocks=[-1, 0, 0])
    assert p.allowed_counts(1).tolist() == [0, 2] and p.allowed_counts(0).tolist() == [1, 2]
    assert p.min_counts.tolist() == [1, 0, 0]
    assert p.min_keep_violation([1, 0, 0]) == 0  # block collapsed whole: exempt
    assert p.min_keep_violation([1, 2, 0]) == 1  # partly collapsed: group 2 misses one
    assert p.min_keep_violation([1, 1, 1]) == 1  # open block: group 1 misses one
    assert p.min_keep_violation([0, 2, 1]) == 1  # group 0 is in no block
    z = p.selection_from_counts(np.array([1, 1, 0]))
    ev = p.evaluate(z)
    assert ev.usage["min_keep_violation"] == 2.0 and not p.is_feasible(z)


def test_counts_space_optimum_equals_all_z_optimum():
    rng = np.random.default_rng(5)
    for trial in range(6):
        p = make([3, 2, 4], scores=rng.integers(0, 4, 9).astype(float),
                 edges=[(0, 1), (1, 2), (2, 0)], coef=[2, 3, 1], b=[1, 0, 2], c0=1.0,
                 F=float(rng.integers(5, 40)), min_keep=[1, 0, 1],
                 blocks=[-1, 0, 0] if trial % 2 else None)
        opt, _ = brute_counts(p)
        assert brute_z(p) == opt
        if opt is not None:
            r = pruneopt.solve(p, "exact")
            assert r.proven_optimal and close(r.objective, opt)


# ------------------------------------------------------------------------------------ exchange
def test_save_load_roundtrip(tmp_path, hand):
    for p in (hand, hand.replace(min_keep=[0, 1, 2], blocks=[-1, 0, 0], names=None),
              make([3], edges=(), coef=(), F=5.0)):
        path = tmp_path / "c.npz"
        p.save(path)
        for q in (ChannelProblem.load(path), pruneopt.load_problem(path)):
            assert isinstance(q, ChannelProblem)
            for f in ("scores", "channel_ptr", "edges", "edge_coef", "linear_coef", "min_keep",
                      "blocks"):
                a, b = getattr(p, f), getattr(q, f)
                assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), f
            assert (q.const, q.flop_budget, q.names) == (p.const, p.flop_budget, p.names)
        with np.load(path) as npz:
            assert str(npz["formulation"]) == "channels"


def test_load_refuses_other_formulations_and_missing_fields(tmp_path, small_problem, hand):
    joint = tmp_path / "j.npz"
    small_problem.save(joint)
    with pytest.raises(ValueError, match="formulation"):
        ChannelProblem.load(joint)
    bad = tmp_path / "b.npz"
    np.savez(bad, formulation=np.array("channels"), scores=hand.scores)
    with pytest.raises(ValueError, match="channel_ptr: missing"):
        ChannelProblem.load(bad)
    np.savez(bad, formulation=np.array("channels"), scores=hand.scores.astype(np.int64),
             channel_ptr=hand.channel_ptr, edges=hand.edges, edge_coef=hand.edge_coef,
             linear_coef=hand.linear_coef, const=np.float64(0), flop_budget=np.float64(1))
    with pytest.raises(ValueError, match="scores: must have a float dtype"):
        ChannelProblem.load(bad)


@pytest.mark.parametrize("change, field", [
    (dict(scores=[1.0, np.nan, 1.0, 1, 1, 1, 1]), "scores"),
    (dict(scores=[1.0, -1.0, 1.0, 1, 1, 1, 1]), "scores"),
    (dict(scores=[1.0] * 6), "channel_ptr"),
    (dict(channel_ptr=[0, 2, 2, 7]), "channel_ptr"),  # an empty group
    (dict(channel_ptr=[1, 3, 5, 7]), "channel_ptr"),
    (dict(edges=[[0, 3], [1, 2], [2, 2]]), "edges"),
    (dict(edges=[0, 1, 2]), "edges"),
    (dict(edge_coef=[1.0, 2.0]), "edge_coef"),
    (dict(edge_coef=[1.0, -2.0, 1.0]), "edge_coef"),
    (dict(edge_coef=[1.0, np.inf, 1.0]), "edge_coef"),
    (dict(linear_coef=[1.0, 2.0]), "linear_coef"),
    (dict(linear_coef=[1.0, -2.0, 0.0]), "linear_coef"),
    (dict(const=-1.0), "const"),
    (dict(const=np.nan), "const"),
    (dict(flop_budget=-1.0), "flop_budget"),
    (dict(flop_budget=np.inf), "flop_budget"),
    (dict(flop_budget="a lot"), "flop_budget"),
    (dict(min_keep=[1, 4, 1]), "min_keep"),
    (dict(min_keep=[1, -1, 1]), "min_keep"),
    (dict(min_keep=[1, 1]), "min_keep"),
    (dict(min_keep=[1.5, 1, 1]), "min_keep"),
    (dict(blocks=[-1, 1, 1]), "blocks"),  # ids must be 0..B-1
    (dict(blocks=[-2, 0, 0]), "blocks"),
    (dict(blocks=[0, 0]), "blocks"),
    (dict(names=["a", "b"]), "names"),
    (dict(names="abc"), "names"),
])
def test_bad_input_is_refused_naming_the_field(hand, change, field):
    with pytest.raises(ValueError, match=field):
        hand.replace(**change)


def test_bad_decisions(hand):
    with pytest.raises(ValueError):
        hand.evaluate(np.ones(6))
    with pytest.raises(ValueError):
        hand.evaluate(np.full(7, 0.5))
    assert not hand.is_feasible(np.ones(6))
    with pytest.raises(ValueError, match="k"):
        hand.flops_of_counts([1, 4, 1])
    with pytest.raises(ValueError, match="form"):
        hand.to_pyomo(form="quadratic")


# ------------------------------------------------------------------------------------ solvers
@settings(max_examples=60)
@given(tiny_channel_problems(chain=True))
def test_exact_solvers_match_brute_force_on_chains(p):
    assert chain_order(p)[0] is not None
    check_against_brute(p, EXACT + ["dp"] + HEURISTIC)


@settings(max_examples=60)
@given(tiny_channel_problems(chain=False))
def test_exact_solvers_match_brute_force_on_dags(p):
    check_against_brute(p, EXACT + HEURISTIC)


@settings(max_examples=60)
@given(tiny_channel_problems(chain=False, max_groups=5, max_channels=3))
def test_fast_bound_is_valid_with_cut_edges(p):
    # max_table=1 forces the count DP to cut edges: every evaluation must stay an upper bound
    opt, _ = brute_counts(p)
    r = pruneopt.solve(p, "fast", max_table=1)
    if opt is None:
        assert r.status == "infeasible"
        return
    assert r.feasible and r.objective <= opt + 1e-9 * max(1.0, opt)
    assert r.bound >= opt - 1e-9 * max(1.0, opt)


@settings(max_examples=25)
@given(tiny_channel_problems(chain=False, max_groups=4, max_channels=4),
       st.sampled_from([0.0, 1e-3, 0.05, 0.5, 3.0]), st.integers(1, 1 << 22))
def test_count_elimination_matches_brute_force_lagrangian(p, mu, max_table):
    grid = np.array(list(itertools.product(*[p.allowed_counts(g) for g in
                                            range(p.num_groups)])), dtype=np.int64)
    grid = grid[p.min_keep_violation(grid) == 0]
    L = float(np.max(p.value_of_counts(grid) - mu * p.flops_of_counts(grid)))
    el = CountElimination(p, max_table=max_table)
    lam = np.linspace(-1.0, 1.0, len(el.cuts))
    ans = el.solve(mu, lam)
    tol = 1e-9 * max(1.0, abs(L))
    assert ans.value >= L - tol  # valid for every λ
    assert p.min_keep_violation(ans.k) == 0
    if ans.exact:
        assert abs(ans.value - L) <= tol
    if not el.cuts:
        assert ans.exact and abs(ans.value - L) <= tol


def test_forms_and_backends_agree_on_medium_instances():
    probs = [generate_channels("random", seed=s, groups=5, channels=6, keep_flops=0.45,
                               dist="ties", collapse=True) for s in (1, 2)]
    probs.append(generate_channels("chain", seed=3, groups=4, channels=4, keep_flops=0.35,
                                   dist="exponential"))
    for p in probs:
        results = {n: pruneopt.solve(p, n) for n in EXACT}
        if chain_order(p)[0] is not None:
            results["dp"] = pruneopt.solve(p, "dp")
        objs = [r.objective for r in results.values()]
        assert all(r.proven_optimal for r in results.values()), {
            n: (r.status, r.message) for n, r in results.items()}
        assert max(objs) - min(objs) <= 1e-9 * max(objs)


def test_collapse_removes_an_expensive_branch_whole():
    # stream 0 (2 ch) -> inner 1 (2 ch, min 2) -> stream 0: the branch costs a lot and is worth
    # little; without collapse the min-keep forces it in and the budget cannot hold
    kw = dict(scores=[5.0, 4.0, 0.2, 0.1], edges=[(0, 1), (1, 0)], coef=[10.0, 10.0],
              b=[1.0, 0.0], F=10.0, min_keep=[1, 2])
    no_collapse = make([2, 2], **kw)
    with_collapse = make([2, 2], blocks=[-1, 0], **kw)
    for name in EXACT:
        r = pruneopt.solve(no_collapse, name)
        assert r.status == "infeasible", (name, r.status)
        r = pruneopt.solve(with_collapse, name)
        assert r.proven_optimal and r.objective == 9.0, (name, r.status, r.objective)
        assert with_collapse.counts(r.x).tolist() == [2, 0]
    # with a larger budget the branch stays (both of its channels: its min-keep is 2)
    roomy = with_collapse.replace(flop_budget=2.0 + 80.0)
    for name in EXACT:
        r = pruneopt.solve(roomy, name)
        assert roomy.counts(r.x).tolist() == [2, 2] and r.proven_optimal
    # min-keep holds: never one channel in the inner group
    mid = with_collapse.replace(flop_budget=2.0 + 40.0)
    for name in EXACT:
        r = pruneopt.solve(mid, name)
        assert mid.counts(r.x)[1] in (0, 2) and r.proven_optimal


def test_dp_refuses_a_coupling_graph_that_is_not_a_chain():
    star = make([2, 2, 2, 2], edges=[(0, 1), (0, 2), (0, 3)], coef=[1, 1, 1], F=20.0)
    with pytest.raises(ValueError, match="chains only"):
        pruneopt.solve(star, "dp")
    cycle = make([2, 2, 2], edges=[(0, 1), (1, 2), (2, 0)], coef=[1, 1, 1], F=20.0)
    with pytest.raises(ValueError, match="cycle"):
        pruneopt.solve(cycle, "dp")
    assert pruneopt.solve(star, "exact").proven_optimal


def test_crosscheck_on_channel_problems_has_no_flags():
    for p in (generate_channels("random", seed=7, groups=5, channels=5, keep_flops=0.5,
                                dist="ties", collapse=True),
              generate_channels("chain", seed=8, groups=4, channels=5, keep_flops=0.4)):
        names = [n for n in AVAILABLE if n != "dp" or chain_order(p)[0] is not None]
        df = crosscheck(p, names)
        assert list(df["verdict"]) == ["ok"] * len(names), df[["solver", "verdict", "message"]]
        assert df["feasible"].all()


def test_relaxed_count_dp_keeps_fast_bounds_valid_on_dense_dags():
    # tiny tables force cut edges, split blocks or the spanning-forest fallback
    for seed in (2, 3):
        p = generate_channels("random", seed=seed, groups=7, channels=5, keep_flops=0.4,
                              dist="exponential", collapse=True)
        opt = pruneopt.solve(p, "pyomo-highs")
        assert opt.proven_optimal
        for max_table in (1, 40):
            el = CountElimination(p, max_table=max_table)
            assert el.cuts or el.splits or max_table > 1
            r = pruneopt.solve(p, "fast", max_table=max_table)
            assert r.feasible and r.objective <= opt.objective * (1 + 1e-9)
            assert r.bound >= opt.objective * (1 - 1e-9)


def test_fast_and_baselines_on_cifar_resnet_structure():
    p = generate_channels("resnet20", seed=0, keep_flops=0.4, dist="exponential")
    fast = pruneopt.solve(p, "fast")
    assert fast.feasible and fast.gap < 1e-2 and fast.info["cuts"] == 0
    for name in ("uniform", "global-threshold"):
        r = pruneopt.solve(p, name)
        assert r.feasible and r.objective <= fast.bound
        k = p.counts(r.x)
        assert np.all(k >= p.min_keep)


def test_fast_on_resnet50_groups_is_certified():
    # triangles and 4-cycles in the coupling graph: the elimination order (hull steps on the
    # streams) keeps every table at most 2049 x 513 and needs no cut, so the dual is exact
    p = generate_channels("resnet50", seed=0, keep_flops=0.5, dist="lognormal")
    el = CountElimination(p)
    assert not el.cuts and el.max_step <= 2049 * 513
    r = pruneopt.solve(p, "fast")
    assert r.info["cuts"] == 0 and r.info["inexact_evaluations"] == 0
    assert r.feasible and r.status in ("feasible", "optimal")
    assert r.bound >= r.objective and r.gap < 1e-5
    u = pruneopt.solve(p, "uniform")
    assert u.objective <= r.bound


# ------------------------------------------------------------------------------------ generator
@pytest.mark.parametrize("shape", SHAPES)
def test_generator_shapes(shape):
    for collapse in (False, True):
        p = generate_channels(shape, seed=1, keep_flops=0.5, collapse=collapse)
        assert p.flop_budget == math.floor(0.5 * p.dense_flops)
        assert np.all(p.edge_coef == np.rint(p.edge_coef))  # MAC counts are integers
        assert (p.num_blocks > 0) == (collapse and shape != "chain") or shape == "random"


def test_generator_matches_the_network_tables():
    for net, shape in ((resnet20, "resnet20"), (resnet50, "resnet50")):
        _, sizes, costs = layer_arrays(net())
        assert generate_channels(shape).dense_flops == float(sizes @ costs)
    p56 = generate_channels("resnet56")
    assert p56.num_groups == 3 + 27 and p56.dense_flops == 125_485_696.0
    assert chain_order(generate_channels("chain", groups=5))[0] == [0, 1, 2, 3, 4]
    assert not CountElimination(generate_channels("resnet56")).cuts  # a tree: exact DP
    with pytest.raises(ValueError, match="shape"):
        generate_channels("vgg")
    with pytest.raises(ValueError, match="dist"):
        generate_channels("chain", dist="cauchy")
