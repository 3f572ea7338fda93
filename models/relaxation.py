"""The generalised continuous relaxation of structured pruning (Larson, Upadhyaya, McDermott,
Ganju, arXiv 2308.14605; probable code bhlarson/mllib) as a structured pruning method on the
channel groups of a model, returning a :class:`~pruneopt.models.structured_decision.
StructuredDecision`. See /work/shared/references/seeds_other.md (c).

**Augmentation.** Every prunable channel c gets a gate g_c = σ(a·s_c), a = ``sigmoid_scale``
(5), s_c initialised to ``init`` (1, so g ≈ 0.993), applied after the channel's BatchNorm
(:func:`~pruneopt.models.channel_gates.gated`; channels tied by a residual add share one
gate). Fixed groups have no gate. The reference's ``prevent_collapse`` (g/max g in the first
cell) is not reproduced; instead a non-residual group never ends empty (see below).

**Training.** The weights of a deep copy of the model and the gate parameters s are trained
jointly, the model in train mode (BatchNorm on batch statistics): the weights with Adam (``lr``
1e-2, the digits training recipe's), the gates with SGD with momentum (``gate_lr`` 1,
``gate_momentum`` 0.9). The reference trains both with one optimiser; SGD on the gates matters:
the FLOP penalty's gradient is the same for every channel of a group, and Adam's per-coordinate
normalisation then moves all gates of a group in lock-step (measured on the digits CNN: at
target 0.5 the relaxed MACs met the target with every gate near 0.7 and nothing below the
threshold), whereas SGD keeps the channel-specific CE gradient, so gates separate and the
ejector drives them to 0 or 1. The loss is

    L = CE + k_s·|F(g)/F₀ − target| + k_pb(t)·‖φ(s)‖₂/√N,      φ(s) = exp(−(s/(2σ))²)

with F(g) = :func:`~pruneopt.models.channel_gates.relaxed_macs` (the bilinear Conv2d/Linear
MACs at gate masses; the reference also counts BN and ReLU as numel·mean(g)), F₀ the dense MACs,
target = ``keep_flops`` (0, the reference default, makes the middle term plain k_s·F/F₀: the
Lagrangian of a FLOP budget), N the number of prunable channels, and the "fence-sitter
ejector" schedule

    k_pb(t) = k_prune_basis · max(0, (t − ejector_start)/(ejector_full − ejector_start))³

with t the 0-based epoch. The reference uses (t − 4)³ with start 4, full 5; it is negative
before epoch 4, apparently by accident — clipped at 0 here. φ is largest at s = 0 (g = 1/2), so
the ejector pushes gates off the fence towards 0 or 1.

**Decision** (:func:`structure_from_gates`, the reference's ``ApplyStructure``):

* channel c is kept iff g_c > ``threshold`` (0.025); fixed groups are kept whole;
* **collapse**: a group with no survivor that lies inside a residual branch — every module
  reading it is a conv/linear reading only it, and each of those either feeds a residual add
  directly (its activation point's output is an operand of an ``add``/``iadd`` in the traced
  graph: e.g. a CIFAR BasicBlock's conv2 + bn2) or produces a single-producer group that again
  lies inside the branch — takes the whole branch with it: its groups get count 0 (also those
  downstream in the branch that still had survivors) and the branch's summand is removed from
  the add by zeroing the last conv's weights and the γ and β of the BatchNorm after it (so its
  output is exactly 0 in eval and train mode), i.e. the block becomes ``relu(shortcut(x))``.
  A collapsed branch costs 0 MACs: every term of ``graph.macs_of_counts`` with it holds its
  zero count. Ties from ``mul`` (squeeze-and-excitation) are not adds and never collapse;
  ``collapse=False`` turns collapse off;
* a group with no survivor that is not inside a residual branch keeps its best channel
  (argmax g);
* the gates are folded into the returned model: at every activation point of a prunable group
  the BatchNorm's γ and β (or the conv/linear's output rows and bias, where no BN follows) are
  multiplied by h_c = g_c·1[kept], so the returned model's forward equals the gated model's
  forward at the hard gates h (plus the collapse), and removed channels are exactly 0 where
  they are produced (as with :func:`~pruneopt.models.shrink.mask_channels`).

**Defaults** (digits CNN, 2-3 CPU seconds): ``epochs`` 12, ``lr`` 1e-2, ``gate_lr`` 1,
``k_prune_basis`` 0.05, ejector from epoch 6 (full at 8), batch 64. Measured on the trained
digits CNN (seed 0): ``keep_flops`` 0.5 → thresholded MACs 0.500 of dense, relaxed 0.500, no
gate left in (0.05, 0.95), test accuracy 0.987 before any fine-tuning; the reference default
(target 0, k_s = 2) → 0.16 of dense at test accuracy 0.96.

``info`` holds the C3 measures: ``relaxed_macs`` F(g) at the soft gates, ``thresholded_macs``
F(keep), ``ce_soft`` / ``ce_hard`` the cross-entropy on X (eval mode) of the gated model at g
and of the returned model.
"""

from __future__ import annotations

import copy
import math
import operator
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from pruneopt.models.autobot import check_int, check_keep_flops, check_method_data, check_real
from pruneopt.models.channel_gates import gated, relaxed_macs
from pruneopt.models.channels import CHANNEL_MAPS, ChannelGraph
from pruneopt.models.structured_decision import StructuredDecision

__all__ = ["continuous_relaxation", "residual_branches", "structure_from_gates"]

_ADDS = {operator.add, operator.iadd, torch.add}


# ------------------------------------------------------------------------------------ graph
class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, tuple(CHANNEL_MAPS)) or super().is_leaf_module(m, qualname)


def _trace_points(model: nn.Module) -> tuple[set[str], dict[str, str]]:
    """From the traced forward: the modules whose output is directly an operand of an add, and
    for each module called once whose only user is a BatchNorm, that BatchNorm (the activation
    point of a conv, as :func:`~pruneopt.models.channels.build_channel_graph` picks it)."""
    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001 -- not traceable (any error): no collapse
        return set(), {}
    mods = dict(model.named_modules())
    feeds, act = set(), {}
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        for user in node.users:
            if (user.op == "call_function" and user.target in _ADDS) or \
                    (user.op == "call_method" and user.target in ("add", "add_")):
                feeds.add(str(node.target))
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and isinstance(
                mods.get(str(users[0].target)), nn.BatchNorm1d | nn.BatchNorm2d):
            act[str(node.target)] = str(users[0].target)
    return feeds, act


def residual_branches(model: nn.Module, graph: ChannelGraph) -> dict[int, tuple[list[int],
                                                                                  list[str]]]:
    """For every prunable group g inside a residual branch (see the module docstring): the groups
    that vanish with it (g and the branch's groups downstream of it) and the branch's last
    conv/linear modules (those whose activation point feeds the residual add)."""
    feeds_add, act = _trace_points(model)
    readers: dict[int, list[str]] = {g: [] for g in range(graph.num_groups)}
    for name, info in graph.modules.items():
        if info.kind == "bn":
            continue
        for g in np.unique(info.in_gid[info.in_gid >= 0]).tolist():
            readers[g].append(name)
    n_producers = [sum(1 for _m, r in graph.members[g] if r == "out")
                   for g in range(graph.num_groups)]
    memo: dict[int, tuple[list[int], list[str]] | None] = {}

    def chain(g: int, depth: int = 0):
        if g in memo:
            return memo[g]
        memo[g] = None  # guards cycles (none in a DAG)
        if graph.fixed[g] or not readers[g] or depth > graph.num_groups:
            return None
        groups, terminals = [g], []
        for r in readers[g]:
            info = graph.modules[r]
            if info.kind not in ("conv", "linear") or np.any(info.in_gid != g):
                return None
            if act.get(r, r) in feeds_add:
                terminals.append(r)
                continue
            outs = np.unique(info.out_gid)
            if outs.size != 1 or outs[0] < 0:
                return None
            h = int(outs[0])
            if n_producers[h] != 1:
                return None
            sub = chain(h, depth + 1)
            if sub is None:
                return None
            groups += [x for x in sub[0] if x not in groups]
            terminals += [x for x in sub[1] if x not in terminals]
        memo[g] = (groups, terminals)
        return memo[g]

    result = {}
    for g in range(graph.num_groups):
        if graph.fixed[g] or n_producers[g] != 1:
            continue  # a residual stream (several producers) is never a branch
        c = chain(g)
        if c is not None and c[1]:
            result[g] = c
    return result


# ------------------------------------------------------------------------------------ decision
def _scale_rows(m: nn.Module, name: str, h: torch.Tensor) -> None:
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if not m.affine:
            raise ValueError(f"model: BatchNorm {name} has no affine parameters to fold the "
                             "gates into")
        m.weight.mul_(h)
        m.bias.mul_(h)
    elif isinstance(m, nn.Conv2d | nn.Linear):
        m.weight.mul_(h.view(-1, *([1] * (m.weight.dim() - 1))))
        if m.bias is not None:
            m.bias.mul_(h)
    else:
        raise ValueError(f"model: cannot fold gates into {name} ({type(m).__name__})")


def structure_from_gates(model: nn.Module, graph: ChannelGraph, gates, *,
                         threshold: float = 0.025, collapse: bool = True
                         ) -> tuple[np.ndarray, nn.Module, list[dict]]:
    """Threshold the gates, collapse dead residual branches and fold the gates into a deep copy
    of ``model`` (see the module docstring). Returns ``(keep, folded_model, collapsed)`` with
    ``collapsed`` one dict per removed branch (``group``, ``groups``, ``modules``)."""
    g = np.asarray(gates.detach().cpu() if isinstance(gates, torch.Tensor) else gates,
                   dtype=np.float64)
    if g.shape != (graph.num_channels,) or not np.all(np.isfinite(g)):
        raise ValueError(f"gates: must be {graph.num_channels} finite values, got {g.shape}")
    threshold = check_real("threshold", threshold)
    fixed = np.repeat(graph.fixed, graph.sizes)
    ptr = graph.channel_ptr
    keep = (g > threshold) | fixed
    k = graph.counts(keep)
    branches = residual_branches(model, graph) if collapse else {}
    dead: set[int] = set()
    terminals: list[str] = []
    collapsed = []
    for gid in np.flatnonzero(k == 0).tolist():
        if gid in dead:
            continue
        if gid in branches:
            groups, mods = branches[gid]
            dead.update(groups)
            terminals += [m for m in mods if m not in terminals]
            collapsed.append({"group": graph.names[gid], "groups": [graph.names[x] for x in groups],
                              "modules": list(mods)})
    for gid in np.flatnonzero(k == 0).tolist():
        if gid not in dead:
            a, b = ptr[gid], ptr[gid + 1]
            keep[a + int(np.argmax(g[a:b]))] = True
    for gid in dead:
        keep[ptr[gid]:ptr[gid + 1]] = False
    h = np.where(fixed, 1.0, g * keep)
    new = copy.deepcopy(model)
    act = _trace_points(model)[1]
    with torch.no_grad():
        for name, gid, idx in graph.activations:
            if graph.fixed[int(gid[0])]:
                continue
            m = new.get_submodule(name)
            ref = next(iter(m.parameters()))
            _scale_rows(m, name, torch.as_tensor(h[ptr[gid] + idx], dtype=ref.dtype,
                                                 device=ref.device))
        for name in terminals:  # remove the collapsed branches' summands
            conv = new.get_submodule(name)
            conv.weight.zero_()
            if conv.bias is not None:
                conv.bias.zero_()
            a = act.get(name, name)
            if a != name:
                bn = new.get_submodule(a)
                bn.weight.zero_()
                bn.bias.zero_()
    return keep, new, collapsed


# ------------------------------------------------------------------------------------ method
def _mean_ce(model: nn.Module, X: torch.Tensor, y: torch.Tensor, device, batch: int = 1024
             ) -> float:
    total = 0.0
    with torch.no_grad():
        for a in range(0, X.shape[0], batch):
            out = model(X[a:a + batch].to(device))
            total += float(F.cross_entropy(out, y[a:a + batch].to(device).long(),
                                           reduction="sum"))
    return total / X.shape[0]


def continuous_relaxation(model: nn.Module, graph: ChannelGraph, X: torch.Tensor,
                          y: torch.Tensor, *, keep_flops: float = 0.0, k_s: float = 2.0,
                          sigmoid_scale: float = 5.0, k_prune_basis: float = 0.05,
                          sigma: float = 1.0, epochs: int = 12, lr: float = 1e-2,
                          threshold: float = 0.025, batch_size: int = 64, seed: int = 0,
                          ejector_start: float = 6.0, ejector_full: float = 8.0,
                          gate_lr: float = 1.0, gate_momentum: float = 0.9,
                          init: float = 1.0, collapse: bool = True, progress=None
                          ) -> StructuredDecision:
    """Train gates and weights of a copy of ``model`` jointly, threshold the gates, collapse dead
    residual branches and fold the gates in (see the module docstring).

    ``keep_flops``: the penalty target in [0, 1] (0: the reference's plain k_s·F/F₀).
    ``init``: the initial gate parameter s (a number, or N numbers to plant a gate state).
    ``progress``: an optional callable receiving ``{"epoch", "epochs", "loss", "ce",
    "relaxed_macs", "k_pb"}`` (plus ``step``/``steps``/``macs``, the same keys as AutoBot's)
    after every epoch. Returns a StructuredDecision with ``model`` the
    trained, thresholded, collapsed and gate-folded copy, ``scores = order = g`` (fixed groups
    1.0), ``target_macs`` = keep_flops · dense MACs (None for keep_flops 0),
    ``arrays["gates"] = g``, and ``info`` with the threshold, the collapsed branches, the relaxed
    and thresholded MACs, ce_soft / ce_hard (C3) and a per-epoch history.
    """
    target = check_keep_flops(keep_flops, allow_zero=True)
    check_method_data(model, graph, X, y)
    k_s = check_real("k_s", k_s)
    a_scale = check_real("sigmoid_scale", sigmoid_scale, positive=True)
    k_pb0 = check_real("k_prune_basis", k_prune_basis)
    sigma = check_real("sigma", sigma, positive=True)
    epochs = check_int("epochs", epochs, 0)
    lr = check_real("lr", lr)
    gate_lr = check_real("gate_lr", gate_lr)
    gate_momentum = check_real("gate_momentum", gate_momentum)
    if gate_momentum >= 1:
        raise ValueError(f"gate_momentum: must be in [0, 1), got {gate_momentum!r}")
    threshold = check_real("threshold", threshold)
    if threshold >= 1.0:
        raise ValueError(f"threshold: must be < 1 (gates lie in (0, 1)), got {threshold!r}")
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    e0 = float(ejector_start)
    e1 = float(ejector_full)
    if not (math.isfinite(e0) and math.isfinite(e1) and e1 > e0):
        raise ValueError(f"ejector_full: must be finite and > ejector_start, got "
                         f"{ejector_start!r}, {ejector_full!r}")
    if progress is not None and not callable(progress):
        raise ValueError("progress: must be a callable or None")
    N = graph.num_channels
    init_t = torch.as_tensor(init, dtype=torch.float32)
    if init_t.dim() == 0:
        init_t = init_t.expand(N)
    if init_t.shape != (N,) or not bool(torch.isfinite(init_t).all()):
        raise ValueError(f"init: must be a finite number or {N} finite numbers")

    net = copy.deepcopy(model)
    ref = next(iter(net.parameters()), None)
    device = ref.device if ref is not None else X.device
    prunable_np = ~np.repeat(graph.fixed, graph.sizes)
    prunable = torch.as_tensor(prunable_np, device=device)
    n_prunable = max(1, int(prunable_np.sum()))
    s = init_t.clone().to(device).requires_grad_(True)
    ones = torch.ones(N, device=device)
    F0 = float(graph.dense_macs)
    for p in net.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    opt_s = torch.optim.SGD([s], lr=gate_lr, momentum=gate_momentum)

    def gates() -> torch.Tensor:
        return torch.where(prunable, torch.sigmoid(a_scale * s), ones)

    def k_pb(t: int) -> float:
        return k_pb0 * max(0.0, (t - e0) / (e1 - e0)) ** 3

    n = int(X.shape[0])
    gen = torch.Generator().manual_seed(seed)
    history = []
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout and the like, without touching the caller's RNG
        with gated(net, graph, gates().detach()) as handle:
            for ep in range(epochs):
                net.train()
                order = torch.randperm(n, generator=gen)
                kp = k_pb(ep)
                sums = {"loss": 0.0, "ce": 0.0}
                for a in range(0, n, batch_size):
                    idx = order[a:a + batch_size]
                    g = gates()
                    handle.gates = g
                    ce = F.cross_entropy(net(X[idx].to(device)), y[idx].to(device).long())
                    frac = relaxed_macs(graph, g) / F0
                    loss = ce + k_s * (frac - target).abs().to(ce.dtype)
                    if kp > 0:
                        phi = torch.exp(-(s[prunable] / (2 * sigma)) ** 2)
                        loss = loss + kp * torch.linalg.vector_norm(phi) / math.sqrt(n_prunable)
                    opt.zero_grad()
                    opt_s.zero_grad()
                    loss.backward()
                    opt.step()
                    opt_s.step()
                    w = idx.numel() / n
                    sums["loss"] += float(loss.detach()) * w
                    sums["ce"] += float(ce.detach()) * w
                with torch.no_grad():
                    rm = float(relaxed_macs(graph, gates()))
                rec = {"epoch": ep + 1, "epochs": epochs, "loss": sums["loss"], "ce": sums["ce"],
                       "relaxed_macs": rm, "k_pb": kp}
                history.append(rec)
                if progress is not None:  # step/steps: the same keys as autobot's progress
                    progress({**rec, "step": ep + 1, "steps": epochs, "macs": rm})
            net.eval()
            with torch.no_grad():
                g_final = gates().detach()
                handle.gates = g_final
                ce_soft = _mean_ce(net, X, y, device)
    train_s = time.perf_counter() - t0
    for p in net.parameters():
        p.requires_grad_(False)
    g_np = g_final.to("cpu", torch.float64).numpy()
    g_np[~prunable_np] = 1.0
    keep, folded, collapsed = structure_from_gates(net, graph, g_np, threshold=threshold,
                                                   collapse=collapse)
    for p in folded.parameters():
        p.requires_grad_(True)
    folded.eval()
    ce_hard = _mean_ce(folded, X, y, device)
    thresholded = graph.macs_of_counts(graph.counts(keep))
    info = {
        "threshold": threshold,
        "collapsed_blocks": collapsed,
        "relaxed_macs": float(relaxed_macs(graph, torch.as_tensor(g_np))),
        "thresholded_macs": int(thresholded),
        "dense_macs": int(graph.dense_macs),
        "ce_soft": ce_soft,
        "ce_hard": ce_hard,
        "history": history,
        "train_seconds": train_s,
        "hyperparameters": {"keep_flops": target, "k_s": k_s, "sigmoid_scale": a_scale,
                            "k_prune_basis": k_pb0, "sigma": sigma, "epochs": epochs, "lr": lr,
                            "threshold": threshold, "batch_size": batch_size, "seed": seed,
                            "ejector_start": e0, "ejector_full": e1, "gate_lr": gate_lr,
                            "gate_momentum": gate_momentum,
                            "optimizer": "adam (weights), sgd+momentum (gates)",
                            "collapse": bool(collapse)},
    }
    return StructuredDecision(method="relaxation", model=folded, graph=graph, keep=keep,
                              scores=g_np, order=g_np.copy(),
                              target_macs=(target * F0) if target > 0 else None, info=info,
                              arrays={"gates": g_np.copy()})
