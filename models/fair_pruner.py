"""FAIR-Pruner (Lin et al., arXiv 2508.02291): Wasserstein U-scores, Taylor R-scores and the
tolerance of difference (ToD), as implemented in ``network-pruner`` v2.16, on the channel groups
of a :class:`~pruneopt.models.channels.ChannelGraph`.

Per prunable group l with n_l channels (units) i:

* **U-score** (removal-oriented, class separability)

      U_{l,i} = max_{c < c'} W₁( P_c(a_{l,i}), P_{c'}(a_{l,i}) )

  over the pairs of classes present in y. a_{l,i} is unit i's activation, read **at the ReLU
  after the point where the channel is produced**: the output of the BatchNorm that directly
  follows a conv, else the conv/linear output (``graph.activations``), with ``relu`` applied
  (v0.x measured at the following ReLU; a unit whose pre-activation is always negative is dead
  and gets U = 0). For the classifier output (a fixed group, never pruned) the same is computed
  on ReLU(logits) and ignored.

  - FC unit (a 2-D activation, or an H·W = 1 map): exact 1-D W₁ between the two empirical
    distributions of the scalar.
  - Conv channel: the H·W map is a vector in R^D; the **sliced** W₁ = mean over ``projections``
    random unit directions θ ∈ S^{D-1} of the 1-D W₁ of ⟨θ, a⟩. The directions are drawn from
    ``torch.Generator().manual_seed(seed)`` and shared by every channel of a layer (and by
    every layer with the same D), so a channel's score does not depend on its position.
  - 1-D W₁ is computed exactly for any class sizes through the quantile functions:
    W₁ = ∫₀¹ |Q_c(t) − Q_{c'}(t)| dt, where Q_c is the step function of class c's sorted
    sample; on the common grid of all breakpoints {j/m_c} every Q_c is constant on each cell,
    so the integral is a finite weighted sum (with equal class sizes m it is the familiar
    (1/m) Σ_j |a_(j) − b_(j)|). Vectorised over units, projections and class pairs (one
    Python loop over classes, one over chunks of projections, one over layers).
  - Samples: ``samples_per_class`` = a cap per class (default 128: on scikit-learn's digits
    that is nearly the whole training split, ~135 per class, and makes the class sizes equal);
    classes with fewer samples use all of theirs; the subset is drawn with ``seed``. ``None``
    uses every sample. (The reference README uses 2 per class — far too few for a stable W₁ on
    a small model; its code caps the classes at 100, here every class present is used: the cost
    is O(C²) pairs.)
  - A residual-tied group has several producing points (the convs whose outputs are added);
    its channel's U is the **max** over them: a channel is "removable" (low U) only if it is
    non-discriminative at every point where it is produced — the conservative choice, in the
    spirit of the reference's "prune less rather than more" alignment rule.

* **R-score** (protection-oriented, first-order Taylor)

      R_{l,i} = | Σ_batches Σ_{θ ∈ Θ_{l,i}} θ · ∂L_b/∂θ |

  with L_b the mean cross-entropy of batch b (PyTorch's default criterion, as in the reference
  loop), gradients taken afresh per batch (the signed per-batch sums are added, the absolute
  value is taken at the end), model in eval mode (BatchNorm on its running statistics).
  Θ_{l,i} = every parameter that :func:`~pruneopt.models.shrink.mask_channels` zeroes when the
  channel is removed: the output filter and bias of each producing conv/linear (all producers of
  a tied group: a **sum** over them), a depthwise conv's filter and bias on the channel, and the
  γ, β of every BatchNorm on the channel. So R_{l,i} is the magnitude of the first-order loss
  change of removing the channel's parameters. All of X is used, in batches of ``batch_size``.

* **ToD rule** (:func:`tod_counts`), per prunable group: S_U(k) = the k units of lowest U,
  T_R(k) = the k units of highest R (ties broken by lower index first, stable sorts),
  o(k) = |S_U(k) ∩ T_R(k)|, and

      k_l = max{ 1 ≤ k ≤ ⌊0.99 n_l⌋ : o(k)/k ≤ α },  or 0 if no k qualifies.

  S_U(k_l) is pruned. ⌊0.99 n⌋ < n for every n ≥ 1, so a group always keeps a channel (n = 1:
  nothing is pruned). Fixed groups (the classifier output, anything unprunable) are excluded.
  Residual adds: the graph already ties the channels joined by an add into one group scored as
  a whole, so the reference's alignment of counts and indices across an add is automatic.

There is no FLOPs target: the budget is whatever α yields (``target_macs=None``).

API: :func:`u_scores`, :func:`r_scores`, :func:`tod_counts`, :func:`fair_pruner` (→
:class:`~pruneopt.models.structured_decision.StructuredDecision`), and the building block
:func:`separability` (max-over-class-pairs (sliced) W₁ of given activations).
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from pruneopt.models.channels import ChannelGraph, graph_module
from pruneopt.models.structured_decision import StructuredDecision

__all__ = ["DEFAULT_SAMPLES_PER_CLASS", "fair_pruner", "r_scores", "separability",
           "tod_counts", "u_scores"]

DEFAULT_SAMPLES_PER_CLASS = 128
# element budgets (not bytes) that bound the memory of one step
_PASS_ELEMENTS = 1 << 26      # stored (projected) activations of one forward pass over the data
_CHUNK_ELEMENTS = 1 << 23     # class quantile tensor (classes × grid × units) of one chunk


# ============================================================================ validation
def _check_int(name: str, value, minimum: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}"
                         f"{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"tolerance: must be a number in [0, 1], got {alpha!r}")
    a = float(alpha)
    if not (0.0 <= a <= 1.0):  # also rejects NaN
        raise ValueError(f"tolerance: must be in [0, 1], got {alpha!r}")
    return a


def _check_data(X, y) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(X, torch.Tensor) or X.dim() < 2:
        raise ValueError("X: must be a batch of inputs, a torch tensor (N, ...)")
    if X.shape[0] == 0:
        raise ValueError("X: is empty; FAIR-Pruner needs labelled samples")
    if not isinstance(y, torch.Tensor) or y.dim() != 1:
        raise ValueError("y: must be a 1-D torch tensor of class labels")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y: must hold one label per row of X, got {y.shape[0]} labels for "
                         f"{X.shape[0]} samples")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"y: labels must be integers, got {y.dtype}")
    if bool((y < 0).any()):
        raise ValueError("y: labels must be >= 0")
    if torch.unique(y).numel() < 2:
        raise ValueError("y: needs at least 2 classes present (U-scores compare classes)")
    return X, y.long()


def _device(model: nn.Module, X: torch.Tensor) -> torch.device:
    ref = next(iter(model.parameters()), None)
    return ref.device if ref is not None else X.device


def _report(progress, msg: str) -> None:
    if progress is None or progress is False:
        return
    if callable(progress):
        progress(msg)
    else:
        print(f"fair: {msg}", file=sys.stderr, flush=True)


# ============================================================================ 1-D / sliced W1
def _quantile_grid(sizes: list[int], device) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Cell widths of the common grid of breakpoints {j/m_c} and, per class, the index of its
    sorted sample that its quantile function takes on each cell."""
    # IEEE division is correctly rounded, so equal rationals j/m give identical floats
    pts = np.unique(np.concatenate([np.arange(m + 1, dtype=np.float64) / m for m in sizes]))
    widths = np.diff(pts)
    mids = 0.5 * (pts[:-1] + pts[1:])
    idx = [torch.as_tensor(np.minimum(np.floor(mids * m).astype(np.int64), m - 1), device=device)
           for m in sizes]
    return torch.as_tensor(widths, device=device), idx


def _pair_w1(vals: torch.Tensor, bounds: list[tuple[int, int]], widths: torch.Tensor,
             idx: list[torch.Tensor]) -> torch.Tensor:
    """Exact 1-D W₁ between every pair of classes, for every column of ``vals`` (m, U)
    (rows grouped by class: class c is ``vals[a:b]`` for (a, b) = bounds[c]).
    Returns (C(C-1)/2, U), pairs in the order (0,1), (0,2), ..., (1,2), ..."""
    vals = vals.to(torch.float64)
    Q = torch.stack([torch.sort(vals[a:b], dim=0).values.index_select(0, ix)
                     for (a, b), ix in zip(bounds, idx, strict=True)])  # (C, grid, U)
    w = widths.to(torch.float64)[None, :, None]
    out = [((Q[c + 1:] - Q[c]).abs_().mul_(w)).sum(1) for c in range(len(bounds) - 1)]
    return torch.cat(out, 0)


def projection_directions(D: int, projections: int, seed: int) -> torch.Tensor:
    """``projections`` random unit vectors of R^D (rows), float64, from ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    theta = torch.randn(projections, D, generator=g, dtype=torch.float64)
    return theta / theta.norm(dim=1, keepdim=True).clamp_min(1e-300)


def _separability_of(stored: torch.Tensor, bounds, widths, idx) -> torch.Tensor:
    """U per channel from stored values: (m, C) scalars or (m, C, P) projections."""
    m, C = stored.shape[:2]
    if stored.dim() == 2:
        per = max(1, _CHUNK_ELEMENTS // max(1, widths.numel() * len(bounds)))
        parts = [_pair_w1(stored[:, a:a + per], bounds, widths, idx) for a in range(0, C, per)]
        return torch.cat(parts, 1).max(0).values
    P = stored.shape[2]
    per = max(1, _CHUNK_ELEMENTS // max(1, widths.numel() * len(bounds) * C))
    total = None
    for p0 in range(0, P, per):  # chunks of projections; the pair sums accumulate
        chunk = stored[:, :, p0:p0 + per]
        d = _pair_w1(chunk.reshape(m, -1), bounds, widths, idx)
        d = d.reshape(d.shape[0], C, -1).sum(2)
        total = d if total is None else total + d
    return (total / P).max(0).values


def _prepare(labels: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Row order that groups the samples by class, and each class's (start, stop)."""
    order = torch.argsort(labels, stable=True)
    _, counts = torch.unique_consecutive(labels[order], return_counts=True)
    ends = np.cumsum(counts.cpu().numpy())
    starts = np.concatenate(([0], ends[:-1]))
    return order, [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def separability(acts: torch.Tensor, labels: torch.Tensor, *, projections: int = 128,
                 seed: int = 0) -> np.ndarray:
    """max over class pairs of W₁ between the classes' distributions of each unit's activation.

    ``acts``: (m, C) scalars (exact 1-D W₁ per column), or (m, C, ...) maps flattened to
    (m, C, D) vectors (sliced W₁ over ``projections`` seeded unit directions shared by all
    channels; D = 1 is the exact scalar case). ``labels``: (m,) integers, at least 2 classes.
    Used as given — no ReLU, no subsampling. Returns float64[C].
    """
    if not isinstance(acts, torch.Tensor) or acts.dim() < 2 or acts.shape[0] == 0:
        raise ValueError("acts: must be a tensor (m, C, ...) with m >= 1")
    if not isinstance(labels, torch.Tensor) or labels.shape != (acts.shape[0],):
        raise ValueError("labels: must hold one label per row of acts")
    projections = _check_int("projections", projections)
    order, bounds = _prepare(labels)
    if len(bounds) < 2:
        raise ValueError("labels: need at least 2 classes")
    a = acts[order].reshape(acts.shape[0], acts.shape[1], -1)
    if a.shape[2] == 1:
        stored = a[:, :, 0]
    else:
        theta = projection_directions(a.shape[2], projections, seed).to(a.device)
        stored = a.to(torch.float64) @ theta.T
    widths, idx = _quantile_grid([b - s for s, b in bounds], a.device)
    return _separability_of(stored, bounds, widths, idx).cpu().numpy()


# ============================================================================ U-scores
def _select_samples(y: torch.Tensor, cap: int | None, seed: int) -> torch.Tensor:
    """Indices of at most ``cap`` samples per class (a seeded subset), grouped by class."""
    g = torch.Generator().manual_seed(int(seed))
    yc = y.cpu()
    picks = []
    for c in torch.unique(yc).tolist():
        ids = torch.nonzero(yc == c).flatten()
        if cap is not None and ids.numel() > cap:
            ids = ids[torch.randperm(ids.numel(), generator=g)[:cap]].sort().values
        picks.append(ids)
    return torch.cat(picks)


def u_scores(model: nn.Module, graph: ChannelGraph, X: torch.Tensor, y: torch.Tensor, *,
             samples_per_class: int | None = DEFAULT_SAMPLES_PER_CLASS, projections: int = 128,
             seed: int = 0, batch_size: int = 256, progress=None) -> np.ndarray:
    """FAIR's U-scores, one per channel of ``graph`` (flat, group-major float64[N] ≥ 0).

    See the module docstring: ReLU of each activation point, exact 1-D W₁ for scalar units,
    sliced W₁ over ``projections`` seeded directions for maps, max over class pairs, max over
    the producing points of a tied group. ``samples_per_class`` caps the samples of each class
    (a ``seed``-ed subset; None = all). The model runs in eval mode without gradients; its
    modules' training flags are restored.
    """
    X, y = _check_data(X, y)
    cap = _check_int("samples_per_class", samples_per_class, allow_none=True)
    projections = _check_int("projections", projections)
    batch_size = _check_int("batch_size", batch_size)
    sel = _select_samples(y, cap, seed)
    labels = y.cpu()[sel]
    order, bounds = _prepare(labels)
    sel = sel[order]  # grouped by class, in class order
    m = int(sel.numel())
    device = _device(model, X)
    widths, idx = _quantile_grid([b - a for a, b in bounds], device)
    ptr = graph.channel_ptr
    N = graph.num_channels
    U = np.full(N, -np.inf)
    points = [(name, ptr[gid] + ix) for name, gid, ix in graph.activations]
    saved = [(mod, mod.training) for mod in model.modules()]
    try:
        model.eval()
        # one forward at batch 1 to learn every point's shape (C, D)
        shapes: dict[str, tuple[int, int]] = {}

        def shape_hook(name):
            def hook(_m, _i, out):
                shapes[name] = (int(out.shape[1]), int(math.prod(out.shape[2:])))
            return hook

        handles = [graph_module(model, n).register_forward_hook(shape_hook(n)) for n, _ in points]
        try:
            with torch.no_grad():
                model(X[:1].to(device))
        finally:
            for h in handles:
                h.remove()
        missing = [n for n, _ in points if n not in shapes]
        if missing:
            raise ValueError(f"model: activation point {missing[0]!r} is not run by forward")
        per_sample = {n: shapes[n][0] * (1 if shapes[n][1] == 1 else projections)
                      for n, _ in points}
        # passes: as many points as fit the element budget (at least one)
        passes: list[list[int]] = []
        used = _PASS_ELEMENTS + 1
        for i, (n, _) in enumerate(points):
            need = per_sample[n] * m
            if used + need > _PASS_ELEMENTS:
                passes.append([])
                used = 0
            passes[-1].append(i)
            used += need
        thetas: dict[int, torch.Tensor] = {}
        for pi, group in enumerate(passes):
            stores: dict[str, list[torch.Tensor]] = {points[i][0]: [] for i in group}

            def store_hook(name):
                C, D = shapes[name]

                def hook(_m, _i, out):
                    a = torch.relu(out.detach()).reshape(out.shape[0], C, D)
                    if D == 1:
                        stores[name].append(a[:, :, 0].float())
                    else:
                        if D not in thetas:
                            thetas[D] = projection_directions(D, projections, seed).to(a.device, a.dtype)
                        stores[name].append((a @ thetas[D].T).float())
                return hook

            handles = [graph_module(model, points[i][0]).register_forward_hook(
                store_hook(points[i][0])) for i in group]
            try:
                with torch.no_grad():
                    for s in range(0, m, batch_size):
                        model(X[sel[s:s + batch_size]].to(device))
            finally:
                for h in handles:
                    h.remove()
            for i in group:
                name, flat = points[i]
                stored = torch.cat(stores.pop(name), 0)
                u = _separability_of(stored, bounds, widths, idx).cpu().numpy()
                del stored
                np.maximum.at(U, flat, u)
            _report(progress, f"U-scores: pass {pi + 1}/{len(passes)} "
                              f"({', '.join(points[i][0] for i in group)})")
    finally:
        for mod, mode in saved:
            mod.training = mode
    U[~np.isfinite(U)] = 0.0  # a channel with no activation point (none in practice)
    return U


# ============================================================================ R-scores
def _channel_parameters(model: nn.Module, graph: ChannelGraph):
    """(parameter, flat channel index per kept row, rows) for every parameter that
    ``mask_channels`` zeroes per channel."""
    ptr = graph.channel_ptr
    out = []
    for name, info in graph.modules.items():
        if info.kind in ("conv", "depthwise", "linear"):
            gid, ix = info.out_gid, info.out_idx
        elif info.kind == "bn":
            gid, ix = info.in_gid, info.in_idx
        else:
            continue
        rows = np.flatnonzero(gid >= 0)
        if rows.size == 0:
            continue
        mod = graph_module(model, name)
        flat = torch.as_tensor(ptr[gid[rows]] + ix[rows])
        rows_t = torch.as_tensor(rows)
        for p in (getattr(mod, "weight", None), getattr(mod, "bias", None)):
            if isinstance(p, torch.Tensor) and p.requires_grad:
                out.append((p, flat, rows_t))
    return out


def r_scores(model: nn.Module, graph: ChannelGraph, X: torch.Tensor, y: torch.Tensor, *,
             batch_size: int = 64, progress=None) -> np.ndarray:
    """FAIR's R-scores |Σ_batches Σ_{θ∈Θ_i} θ·∂L_b/∂θ| (float64[N] ≥ 0; module docstring).

    The gradients come from ``torch.autograd.grad`` per batch, so the model's ``.grad`` fields
    are left alone; eval mode, training flags restored.
    """
    X, y = _check_data(X, y)
    batch_size = _check_int("batch_size", batch_size)
    params = _channel_parameters(model, graph)
    total = torch.zeros(graph.num_channels, dtype=torch.float64)
    if not params:
        return total.numpy()
    device = _device(model, X)
    tensors = [p for p, _, _ in params]
    saved = [(mod, mod.training) for mod in model.modules()]
    try:
        model.eval()
        for s in range(0, X.shape[0], batch_size):
            logits = model(X[s:s + batch_size].to(device))
            if logits.dim() != 2:
                raise ValueError(f"model: output must be (batch, classes) logits, got shape "
                                 f"{tuple(logits.shape)}")
            loss = nn.functional.cross_entropy(logits, y[s:s + batch_size].to(device))
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            for (p, flat, rows), g in zip(params, grads, strict=True):
                if g is None:
                    continue
                prod = (p.detach() * g).to(torch.float64)
                prod = prod.reshape(prod.shape[0], -1).sum(1) if prod.dim() > 1 else prod
                total.index_add_(0, flat, prod.cpu()[rows])
        _report(progress, f"R-scores: {X.shape[0]} samples")
    finally:
        for mod, mode in saved:
            mod.training = mode
    return total.abs().numpy()


# ============================================================================ ToD
def tod_counts(u, r, alpha) -> tuple[int, np.ndarray]:
    """The ToD count of one layer: (k_l, o) with o[k] = |S_U(k) ∩ T_R(k)| for k = 0..⌊0.99 n⌋.

    S_U(k) = the k lowest-U units, T_R(k) = the k highest-R units (stable sorts: ties go to
    the lower index first). A unit is in both iff max(rank_U, rank_R) < k, so o is the
    cumulative count of those maxima (O(n log n)). k_l = the largest k in 1..⌊0.99 n⌋ with
    o(k)/k ≤ α, else 0. α = 1 gives ⌊0.99 n⌋; α = 0 the largest k with no overlap.
    """
    alpha = _check_alpha(alpha)
    u = np.asarray(u, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if u.ndim != 1 or u.shape != r.shape:
        raise ValueError(f"u, r: must be two vectors of one length, got {u.shape} and {r.shape}")
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(r))):
        raise ValueError("u, r: must be finite")
    n = u.size
    kmax = (99 * n) // 100  # ⌊0.99 n⌋ exactly
    rank_u = np.empty(n, dtype=np.int64)
    rank_u[np.argsort(u, kind="stable")] = np.arange(n)
    rank_r = np.empty(n, dtype=np.int64)
    rank_r[np.argsort(-r, kind="stable")] = np.arange(n)
    both = np.maximum(rank_u, rank_r)  # k at which the unit enters both sets is both + 1
    o = np.concatenate(([0], np.cumsum(np.bincount(both, minlength=n))))[:kmax + 1]
    o = o.astype(np.int64)
    if kmax == 0:
        return 0, o
    k = np.arange(1, kmax + 1)
    ok = np.flatnonzero(o[1:] / k <= alpha)
    return (int(k[ok[-1]]) if ok.size else 0), o


# ============================================================================ the method
def fair_pruner(model: nn.Module, graph: ChannelGraph, X: torch.Tensor, y: torch.Tensor, *,
                tolerance: float = 0.005,
                samples_per_class: int | None = DEFAULT_SAMPLES_PER_CLASS,
                projections: int = 128, seed: int = 0, batch_size: int = 64,
                progress: bool | Callable[[str], None] | None = None) -> StructuredDecision:
    """FAIR-Pruner's keep vector for ``model`` at tolerance α (module docstring).

    U-scores from at most ``samples_per_class`` samples per class of (X, y), R-scores from all
    of them; per prunable group, prune the k_l lowest-U channels (:func:`tod_counts`). The
    returned decision's ``model`` is ``model`` itself, unchanged (apply the mask with
    :func:`~pruneopt.models.shrink.mask_channels` or :func:`~pruneopt.models.shrink.shrink_model`).

    ``scores`` = R (the value a kept channel protects), ``order`` = U (higher kept first),
    ``target_macs`` None. ``info``: tolerance, pruned_counts {group: k_l}, kept_fractions,
    samples_per_class, projections, seed, batch_size, seconds. ``arrays``: u, r, overlap (the
    o arrays per group, None for fixed groups), max_prune (⌊0.99 n_g⌋, 0 for fixed groups).
    ``progress``: True prints stages to stderr, a callable receives them as strings.
    """
    alpha = _check_alpha(tolerance)
    X, y = _check_data(X, y)
    cap = _check_int("samples_per_class", samples_per_class, allow_none=True)
    projections = _check_int("projections", projections)
    batch_size = _check_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed: must be an integer, got {seed!r}")
    t0 = time.perf_counter()
    U = u_scores(model, graph, X, y, samples_per_class=cap, projections=projections, seed=seed,
                 progress=progress)
    t1 = time.perf_counter()
    R = r_scores(model, graph, X, y, batch_size=batch_size, progress=progress)
    t2 = time.perf_counter()
    ptr, sizes = graph.channel_ptr, graph.sizes
    keep = np.ones(graph.num_channels, dtype=bool)
    overlap: list[np.ndarray | None] = []
    max_prune = np.zeros(graph.num_groups, dtype=np.int64)
    pruned: dict[str, int] = {}
    for g in range(graph.num_groups):
        if graph.fixed[g]:
            overlap.append(None)
            continue
        a, b = int(ptr[g]), int(ptr[g + 1])
        k, o = tod_counts(U[a:b], R[a:b], alpha)
        overlap.append(o)
        max_prune[g] = (99 * int(sizes[g])) // 100
        pruned[graph.names[g]] = k
        keep[a + np.argsort(U[a:b], kind="stable")[:k]] = False
    dec = StructuredDecision(
        method="fair", model=model, graph=graph, keep=keep, scores=R, order=U, target_macs=None,
        info={"tolerance": alpha, "pruned_counts": pruned, "samples_per_class": cap,
              "projections": projections, "seed": int(seed), "batch_size": batch_size},
        arrays={"u": U, "r": R, "overlap": overlap, "max_prune": max_prune})
    dec.info["kept_fractions"] = dec.kept_fractions
    dec.info["seconds"] = {"u": t1 - t0, "r": t2 - t1, "total": time.perf_counter() - t0}
    _report(progress, f"tolerance {alpha}: pruned {sum(pruned.values())} channels, "
                      f"{dec.achieved_macs / graph.dense_macs:.3f} of the MACs kept")
    return dec
