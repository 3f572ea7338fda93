"""AutoBot (Castells & Yeom, AAAI 2023; code nota-github/autobot_AAAI23@980d9e7) as a structured
pruning method on the channel groups of a model, returning a
:class:`~pruneopt.models.structured_decision.StructuredDecision`.

**The method** (following the reference code, see /work/shared/references/seeds_other.md (a)):

1. Every prunable channel c gets a trainable ψ_c with gate λ_c = σ(ψ_c), initialised to
   λ = 0.9 (ψ = logit 0.9). Channels tied by a residual add form one group and share one gate.
   The gates multiply the activations where the channels are produced
   (:func:`~pruneopt.models.channel_gates.gated`: after the BN, before the ReLU, which equals
   the reference's after-ReLU gating for λ > 0). Fixed groups have no gate (λ = 1).
2. The weights are frozen (``model.eval()``, ``requires_grad`` off; both restored afterwards)
   and only ψ is trained, with Adam (lr 0.6), on

       L = CE + β·L_F + γ·L_B,
       L_F = (F − T)/(F_max − T)   if F > T,   else 1 − F/T,
       L_B = (1/#groups) Σ_g (1/n_g) Σ_{i∈g} |λ_i − round(λ_i)|

   with F = :func:`~pruneopt.models.channel_gates.relaxed_macs` (λ) the relaxed bilinear MACs,
   F_max the dense MACs and T = keep_flops · F_max; CE is the batch mean (the reference's
   per-image loop with batch 1 is the same mean in eval mode). Defaults β = 6, γ = 0.4,
   lr = 0.6, batch 64 are the reference's defaults.
3. "One epoch on a subset": by default ``steps`` = ⌈|X|/batch_size⌉, one pass over X in
   shuffled batches (the reference runs 200 batches of 64 of CIFAR-10's training set, 25.6 %
   of it; on the 1,347 digits training images one pass is 22 batches). With more steps than
   one pass the data is reshuffled each pass. As in the reference, the λ kept is the one with
   the lowest loss among the steps i > 0.6·steps (the λ at which that loss was computed, before
   its Adam step); if no step qualifies (steps ≤ 1) the final λ is kept.
4. The 0/1 mask comes from one global threshold t found by bisection (the reference's
   ``select_index_flops``, :func:`bisect_threshold`): t = 0.5, Δ = 0.25; keep 1[λ > t] (a group
   left empty keeps its argmax channel); if F > T then t += Δ else t −= Δ; Δ /= 2; stop when
   |F − T| ≤ tolerance or after 50 thresholds. The reference tolerance is 50,000 FLOPs on
   networks of 10⁸–10⁹; the default here is 0.1 % of the dense MACs (at least 1). The final mask
   may therefore miss T by more than the tolerance (the bisection runs out of iterations on a
   step function) and may exceed T: ``info["bisection_miss_macs"]`` = F(mask) − T records it.
   In fact, when it runs out of iterations it ends *above* T: λ are float32 (as in the
   reference), so the dyadic thresholds tested eventually hit the jump value λ* exactly, where
   λ* itself is dropped (F ≤ T, t goes down), and every later t lies below λ* (F > T); the
   last mask tested keeps λ* and exceeds T by up to one step of F. Measured on the trained
   digits CNN at keep_flops 0.3 / 0.5 / 0.7 (one pass, 22 steps): 50 iterations each, misses
   +1,623 / +3,442 / +10,579 MACs (0.4 / 0.8 / 2.3 % of the dense 451,904) against the
   default tolerance of 452.

MACs are the package's Conv2d/Linear count (:class:`~pruneopt.models.channels.
ChannelGraph`), not the reference's thop-style counter (which also counts BatchNorm), so that
the exact programs of the gap measures use the same counter as the heuristic.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pruneopt.formulations.checks import fraction
from pruneopt.models.channel_gates import channel_group_index, gated, relaxed_macs
from pruneopt.models.channels import ChannelGraph
from pruneopt.models.structured_decision import StructuredDecision

__all__ = ["autobot", "bisect_threshold", "default_tolerance_macs"]


# ------------------------------------------------------------------------------------ checks
def check_keep_flops(keep_flops, *, allow_zero: bool = False) -> float:
    return fraction(keep_flops, "keep_flops", low_open=not allow_zero,
                    what="a fraction of the dense MACs")


def check_method_data(model: nn.Module, graph: ChannelGraph, X, y) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: must be an nn.Module, got {type(model).__name__}")
    if not isinstance(graph, ChannelGraph):
        raise ValueError(f"graph: must be a ChannelGraph (build_channel_graph), got "
                         f"{type(graph).__name__}")
    if not isinstance(X, torch.Tensor) or X.dim() < 2:
        raise ValueError("X: must be a tensor of inputs (N, C, ...)")
    if X.shape[0] < 1:
        raise ValueError("X: is empty; the method needs at least one sample")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y: must be a vector of {X.shape[0]} class labels (one per row of X), "
                         f"got {tuple(getattr(y, 'shape', ()))}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"y: must hold integer class labels, got {y.dtype}")
    if tuple(X.shape[1:]) != tuple(graph.input_shape):
        raise ValueError(f"X: samples have shape {tuple(X.shape[1:])}, the channel graph was "
                         f"built for {tuple(graph.input_shape)}")
    names = dict(model.named_modules())
    for name in graph.modules:
        if name not in names:
            raise ValueError(f"model: has no module {name!r}; it does not match the channel "
                             "graph")


def check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise ValueError(f"{name}: must be an integer >= {lo}, got {value!r}")
    return int(value)


def check_real(name: str, value, *, positive: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a real number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x) or x < 0 or (positive and x == 0):
        raise ValueError(f"{name}: must be a finite number {'> 0' if positive else '>= 0'}, "
                         f"got {value!r}")
    return x


def default_tolerance_macs(graph: ChannelGraph) -> float:
    """0.1 % of the dense MACs, at least 1 (the reference's 50,000 FLOPs is 0.01–0.1 % of its
    networks' MACs)."""
    return max(1.0, 1e-3 * graph.dense_macs)


# ------------------------------------------------------------------------------------ bisection
def mask_at(graph: ChannelGraph, lam: np.ndarray, t: float) -> np.ndarray:
    """1[λ > t] with fixed groups whole and an empty prunable group keeping its argmax."""
    keep = lam > t
    fixed = np.repeat(graph.fixed, graph.sizes)
    keep[fixed] = True
    ptr = graph.channel_ptr
    for g in np.flatnonzero(graph.counts(keep) == 0):
        a, b = ptr[g], ptr[g + 1]
        keep[a + int(np.argmax(lam[a:b]))] = True
    return keep


def bisect_threshold(graph: ChannelGraph, lam, target_macs: float, *,
                     tolerance_macs: float | None = None, max_iter: int = 50
                     ) -> tuple[np.ndarray, float, int]:
    """AutoBot's global-threshold bisection (the reference's ``select_index_flops``).

        t ← 0.5, Δ ← 0.25
        repeat (at most ``max_iter`` times, while |F − T| > tolerance):
            z ← 1[λ > t]   (fixed groups whole; an empty group keeps its argmax channel)
            F ← MACs(z)
            t ← t + Δ if F > T else t − Δ;   Δ ← Δ/2

    Returns ``(keep, threshold, iterations)``: the last mask tested, the threshold it was tested
    at, and the number of thresholds tested. The mask can miss T by more than the tolerance
    (F is a step function of t and Δ halves every step) and may lie above T; compare with the
    best of all N+1 cuts of the sorted λ for the threshold-search gap G0.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if lam.shape != (graph.num_channels,) or not np.all(np.isfinite(lam)):
        raise ValueError(f"lam: must be {graph.num_channels} finite gate values, got shape "
                         f"{lam.shape}")
    T = check_real("target_macs", target_macs)
    tol = default_tolerance_macs(graph) if tolerance_macs is None \
        else check_real("tolerance_macs", tolerance_macs)
    max_iter = check_int("max_iter", max_iter, 1)
    thres, delta = 0.5, 0.25
    tested = thres
    keep = mask_at(graph, lam, thres)
    it = 0
    flops = None
    while (flops is None or abs(flops - T) > tol) and it < max_iter:
        tested = thres
        keep = mask_at(graph, lam, thres)
        flops = graph.macs_of_counts(graph.counts(keep))
        if flops > T:
            thres += delta
        else:
            thres -= delta
        delta /= 2
        it += 1
    return keep, float(tested), it


# ------------------------------------------------------------------------------------ method
def autobot(model: nn.Module, graph: ChannelGraph, X: torch.Tensor, y: torch.Tensor, *,
            keep_flops: float, beta: float = 6.0, gamma: float = 0.4, lr: float = 0.6,
            steps: int | None = None, batch_size: int = 64, seed: int = 0,
            tolerance_macs: float | None = None, progress=None) -> StructuredDecision:
    """AutoBot on ``model`` (frozen) with the channel groups of ``graph``, data (X, y), aiming at
    ``keep_flops`` · dense MACs (see the module docstring for the method and the defaults).

    ``progress``: an optional callable receiving a dict ``{"step", "steps", "loss", "ce",
    "loss_flops", "loss_bool", "macs"}`` after every step. Returns a StructuredDecision with
    ``model`` the unchanged input model, ``scores = order = λ`` (fixed groups 1.0),
    ``target_macs = T``, ``arrays["lambda"] = λ`` and ``info`` holding the threshold, the
    bisection's iterations and miss F(mask) − T, a short loss history, the steps and the
    hyperparameters.
    """
    keep_flops = check_keep_flops(keep_flops)
    check_method_data(model, graph, X, y)
    beta = check_real("beta", beta)
    gamma = check_real("gamma", gamma)
    lr = check_real("lr", lr, positive=True)
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    n = int(X.shape[0])
    per_pass = math.ceil(n / batch_size)
    steps = per_pass if steps is None else check_int("steps", steps, 1)
    if progress is not None and not callable(progress):
        raise ValueError("progress: must be a callable or None")
    tol = default_tolerance_macs(graph) if tolerance_macs is None \
        else check_real("tolerance_macs", tolerance_macs)

    N = graph.num_channels
    F_max = float(graph.dense_macs)
    T = keep_flops * F_max
    prunable = torch.as_tensor(~np.repeat(graph.fixed, graph.sizes))
    group = channel_group_index(graph)
    groups = [g for g in range(graph.num_groups) if not graph.fixed[g]]

    ref = next(iter(model.parameters()), None)
    device = ref.device if ref is not None else X.device
    psi0 = math.log(0.9 / 0.1)  # σ(ψ) = 0.9
    psi = torch.full((N,), psi0, dtype=torch.float32, device=device, requires_grad=True)
    opt = torch.optim.Adam([psi], lr=lr)
    prunable_d = prunable.to(device)
    ones = torch.ones(N, dtype=torch.float32, device=device)
    gidx = torch.as_tensor(group, device=device)
    n_groups = max(1, len(groups))
    sizes = torch.as_tensor(graph.sizes, dtype=torch.float32, device=device)
    mask_groups = torch.as_tensor(~graph.fixed, device=device)

    def lambdas() -> torch.Tensor:
        return torch.where(prunable_d, torch.sigmoid(psi), ones)

    gen = torch.Generator().manual_seed(seed)
    saved_train = [(m, m.training) for m in model.modules()]
    saved_grad = [(p, p.requires_grad) for p in model.parameters()]
    history: list[dict] = []
    best_loss = math.inf
    best_lam: torch.Tensor | None = None
    best_step = None
    t0 = time.perf_counter()
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        with gated(model, graph, lambdas().detach()) as handle:
            order = torch.randperm(n, generator=gen)
            pos = 0
            for i in range(steps):
                if pos >= n:
                    order, pos = torch.randperm(n, generator=gen), 0
                idx = order[pos:pos + batch_size]
                pos += batch_size
                xb = X[idx].to(device)
                yb = y[idx].to(device).long()
                lam = lambdas()
                handle.gates = lam
                ce = F.cross_entropy(model(xb), yb)
                flops = relaxed_macs(graph, lam)
                if float(flops.detach()) > T:
                    loss_f = (flops - T) / max(F_max - T, 1e-12)
                else:
                    loss_f = 1.0 - flops / T
                dist = (lam - torch.round(lam)).abs()
                per_group = torch.zeros(graph.num_groups, dtype=torch.float32,
                                        device=device).index_add(0, gidx, dist) / sizes
                loss_b = per_group[mask_groups].sum() / n_groups
                loss = ce + beta * loss_f.to(ce.dtype) + gamma * loss_b
                opt.zero_grad()
                loss.backward()
                lv = float(loss.detach())
                if lv < best_loss and i > 0.6 * steps:
                    best_loss, best_lam, best_step = lv, lam.detach().clone(), i + 1
                opt.step()
                rec = {"step": i + 1, "steps": steps, "loss": lv, "ce": float(ce.detach()),
                       "loss_flops": float(loss_f.detach()), "loss_bool": float(loss_b.detach()),
                       "macs": float(flops.detach())}
                history.append(rec)
                if progress is not None:
                    progress(dict(rec))
    finally:
        for p, flag in saved_grad:
            p.requires_grad_(flag)
        for m, mode in saved_train:
            m.training = mode
    if best_lam is None:
        with torch.no_grad():
            best_lam, best_step = lambdas().detach().clone(), steps
    train_s = time.perf_counter() - t0
    lam_np = best_lam.to("cpu", torch.float64).numpy()
    lam_np[~prunable.numpy()] = 1.0
    keep, thres, iters = bisect_threshold(graph, lam_np, T, tolerance_macs=tol)
    achieved = graph.macs_of_counts(graph.counts(keep))
    # a short history: at most ~20 evenly spaced steps, and the last one
    stride = max(1, len(history) // 20)
    short = [history[j] for j in range(0, len(history), stride)]
    if history and short[-1] is not history[-1]:
        short.append(history[-1])
    info = {
        "threshold": thres,
        "bisection_iterations": iters,
        "bisection_miss_macs": float(achieved - T),
        "tolerance_macs": tol,
        "achieved_macs": int(achieved),
        "relaxed_macs": float(relaxed_macs(graph, torch.as_tensor(lam_np))),
        "losses": short,
        "best_step": best_step,
        "best_loss": best_loss if math.isfinite(best_loss) else None,
        "steps": steps,
        "train_seconds": train_s,
        "hyperparameters": {"keep_flops": keep_flops, "beta": beta, "gamma": gamma, "lr": lr,
                            "steps": steps, "batch_size": batch_size, "seed": seed,
                            "init_lambda": 0.9, "tolerance_macs": tol, "max_iter": 50},
    }
    return StructuredDecision(method="autobot", model=model, graph=graph, keep=keep,
                              scores=lam_np, order=lam_np.copy(), target_macs=T, info=info,
                              arrays={"lambda": lam_np.copy()})
