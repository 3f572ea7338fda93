"""The joint FLOP/NNZ selection problem — FALCON's integer linear program.

    maximize    Σ_i s_i x_i
    subject to  Σ_i x_i           ≤ K        (NNZ budget)
                Σ_i c_{g(i)} x_i  ≤ F        (FLOP budget, in MACs per sample)
                x ∈ {0, 1}^p

Items (weights) i = 0..p-1 are grouped in layers g = 0..L-1; layer g owns the contiguous items
``group_ptr[g]:group_ptr[g+1]`` and every item of it costs ``flop_cost[g]`` MACs (a Conv2d weight
costs H_out·W_out, a Linear weight 1). Scores s_i ≥ 0 are importances (w_i² for magnitude, so
that the ILP is the Euclidean projection onto {‖w‖₀ ≤ K, FLOPs(w) ≤ F}).

Because items of one layer cost the same, an optimal x keeps a prefix of each layer's scores in
decreasing order, and the LP relaxation has at most two fractional variables.

Exchange format (one ``.npz``, no pickles):
``scores`` float64[p] ≥ 0, ``group_ptr`` int64[L+1], ``flop_cost`` float64[L] > 0,
``nnz_budget`` integer scalar, ``flop_budget`` float scalar, optional ``names`` str[L]
(one name per layer), and ``formulation`` = "joint".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pruneopt.formulations.base import Formulation, datum
from pruneopt.formulations.checks import check_pointer
from pruneopt.formulations.common import Evaluation, segment_count, segment_sum_selected


class LayerBudgets:
    """The layers and the two budgets that the joint problems share (a mixin of
    :class:`JointBudgetProblem` and :class:`~pruneopt.formulations.joint_qp.problem.
    JointQuadraticProblem`): items grouped in layers by ``group_ptr``, every item of layer g
    costing ``flop_cost[g]`` MACs, an NNZ budget K and a FLOP budget F.

    The class says what its items are in ``item_noun`` ("scores" or "weights", for messages).
    """

    item_noun: ClassVar[str]

    def check_layers(self) -> None:
        check_pointer(self.group_ptr, "group_ptr", self.num_items, of=f"{self.item_noun} p")

    def dimensions(self) -> dict[str, tuple[str, int]]:
        return {"layer": ("L", self.group_ptr.size - 1)}

    def _derive(self) -> None:
        item_cost = np.repeat(self.flop_cost, np.diff(self.group_ptr))
        item_cost.setflags(write=False)
        object.__setattr__(self, "_item_cost", item_cost)

    @property
    def num_groups(self) -> int:
        """L, the number of layers."""
        return int(self.flop_cost.size)

    @property
    def group_sizes(self) -> np.ndarray:
        """The number of items of each layer (int64[L])."""
        return np.diff(self.group_ptr)

    @property
    def item_cost(self) -> np.ndarray:
        """Per-item MAC cost c_{g(i)} (read-only)."""
        return self._item_cost

    @property
    def total_flops(self) -> float:
        """The MACs of all items: Σ_g |g| c_g."""
        return float(self.group_sizes @ self.flop_cost)

    def group_counts(self, x) -> np.ndarray:
        """Number of selected (non-zero) items in each layer (int64[L])."""
        return segment_count(np.asarray(x, dtype=bool), self.group_ptr)

    def usage_of_support(self, support) -> tuple[int, float]:
        """(NNZ, MACs) of a support (bool[p])."""
        counts = self.group_counts(support)
        return int(counts.sum()), float(counts @ self.flop_cost)

    def budget_evaluation(self, objective: float, support) -> Evaluation:
        """The objective with the NNZ and FLOP usage of a support against K and F."""
        nnz, flops = self.usage_of_support(support)
        return Evaluation(
            objective=objective,
            usage={"nnz": float(nnz), "flops": flops},
            limits={"nnz": float(self.nnz_budget), "flops": float(self.flop_budget)},
        )


@dataclass(frozen=True, eq=False)
class JointBudgetProblem(LayerBudgets, Formulation):
    """Problem data of the joint FLOP/NNZ ILP (see the module docstring for the program)."""

    scores: np.ndarray = datum("real", bound=">= 0")
    group_ptr: np.ndarray = datum("int")
    flop_cost: np.ndarray = datum("real", per="layer", bound="> 0")
    nnz_budget: int = datum("int", 0, bound=">= 0")
    flop_budget: float = datum("real", 0, bound=">= 0")
    names: tuple[str, ...] | None = datum("names", per="layer", optional=True)
    _item_cost: np.ndarray = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "joint"
    sense: ClassVar[str] = "maximize"
    item_noun: ClassVar[str] = "scores"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field if the data do not define a problem."""
        self.check_values()
        self.check_layers()
        self.check_lengths()

    @property
    def num_items(self) -> int:
        return int(self.scores.size)

    def evaluate(self, x) -> Evaluation:
        """Objective and constraint usage of a 0/1 selection, recomputed in float64."""
        xb = self.canonical(x)
        return self.budget_evaluation(segment_sum_selected(self.scores, xb, self.group_ptr), xb)

    # ----------------------------------------------------------------------------- declarations
    def to_pyomo(self, score_scale: float = 1.0, cost_unit: float = 1.0):
        """The ILP as a Pyomo ``ConcreteModel`` that reads like the program.

        ``score_scale`` multiplies the objective (solvers rescale scores to order one around the
        decision threshold; see DESIGN §7); ``cost_unit`` divides the MAC costs and the FLOP
        budget by one common factor (exact when it divides all costs), keeping coefficients
        integers.
        """
        from pruneopt.formulations.joint.pyomo_model import build_pyomo

        return build_pyomo(self, score_scale=score_scale, cost_unit=cost_unit)

    def to_cpsat(self, score_scale: float | None = None):
        """The ILP as an OR-Tools CP-SAT model with integerised scores.

        Returns ``(model, x_vars, scaling)`` where ``scaling`` says how scores and costs were
        turned into integers (see :mod:`pruneopt.formulations.joint.cpsat_model`).
        """
        from pruneopt.formulations.joint.cpsat_model import build_cpsat

        return build_cpsat(self, score_scale=score_scale)

    def __repr__(self) -> str:
        return (
            f"JointBudgetProblem(p={self.num_items}, L={self.num_groups}, "
            f"nnz_budget={self.nnz_budget}, flop_budget={self.flop_budget:.6g})"
        )
