"""What a structured pruning method decided: the common record of AutoBot, FAIR-Pruner and the
continuous relaxation, from which the gap measures (:mod:`pruneopt.models.method_gaps`) are
computed against exact solutions of the channel-selection program (DESIGN §2c).

Every method works on the channel groups of a :class:`~pruneopt.models.channels.
ChannelGraph` and ends with a 0/1 keep vector z over its channels (flat, group-major: the
decision of a :class:`~pruneopt.formulations.channels.problem.ChannelProblem`). Besides z it reports

* ``scores`` s ≥ 0 — the per-channel values the method itself ranks by in the measured
  sense: AutoBot's gate values λ, FAIR's R-scores (the Taylor reconstruction error a pruned
  unit costs, so "kept value" = Σ R of kept units), the relaxation's gates g. The value gap
  G1 compares Σ s·z with the exact optimum of max Σ_g V_g(k_g) s.t. FLOPs(k) ≤ FLOPs(z);
* ``order`` — the ranking the method prunes along (higher = kept first: λ, U, g), so that a
  prefix enumeration over it contains the method's own mask (the true-loss gaps G2/F5/C1);
* ``target_macs`` — the MACs it aimed at, if it had a target (AutoBot; the relaxation's
  penalty target), None for FAIR (its budget is what the tolerance gives);
* ``info`` (JSON-ready) and ``arrays`` (numpy, for the gap measures) — method specific.

Counts of collapsed residual branches are 0 in ``keep``; ``graph.macs_of_counts`` then costs
them 0 (every product term holds the zero count).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from pruneopt.models.channels import ChannelGraph


@dataclass(eq=False)
class StructuredDecision:
    """The outcome of one structured pruning method on one model (see the module docstring)."""

    method: str
    model: nn.Module
    graph: ChannelGraph
    keep: np.ndarray
    scores: np.ndarray
    order: np.ndarray
    target_macs: float | None = None
    info: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        N = self.graph.num_channels
        keep = np.asarray(self.keep)
        if keep.shape != (N,):
            raise ValueError(f"keep: must have one flag per channel ({N}), got {keep.shape}")
        self.keep = keep.astype(bool)
        for name in ("scores", "order"):
            v = np.asarray(getattr(self, name), dtype=np.float64)
            if v.shape != (N,) or not np.all(np.isfinite(v)):
                raise ValueError(f"{name}: must be {N} finite numbers, got shape {v.shape}")
            setattr(self, name, v)
        if np.any(self.scores < 0):
            raise ValueError("scores: must be >= 0")
        fixed = np.repeat(self.graph.fixed, self.graph.sizes)
        if np.any(fixed & ~self.keep):
            raise ValueError("keep: a fixed group lost a channel")

    @property
    def counts(self) -> np.ndarray:
        return self.graph.counts(self.keep)

    @property
    def achieved_macs(self) -> int:
        """Exact MACs per sample of the Conv2d/Linear layers with these channels kept."""
        return self.graph.macs_of_counts(self.counts)

    @property
    def kept_fractions(self) -> dict[str, float]:
        """k_g / n_g of every prunable group, by group name."""
        k, n = self.counts, self.graph.sizes
        return {self.graph.names[g]: float(k[g] / n[g])
                for g in np.flatnonzero(self.graph.prunable)}


__all__ = ["StructuredDecision"]
