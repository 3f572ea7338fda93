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

import os
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pruneopt.formulations.common import (
    Evaluation,
    as_binary_vector,
    check_finite_nonnegative,
    load_npz_strict,
    read_scalar,
    save_npz_atomic,
    segment_count,
    segment_sum_selected,
)

FORMULATION = "joint"


@dataclass(frozen=True, eq=False)
class JointBudgetProblem:
    """Problem data of the joint FLOP/NNZ ILP (see the module docstring for the program)."""

    scores: np.ndarray
    group_ptr: np.ndarray
    flop_cost: np.ndarray
    nnz_budget: int
    flop_budget: float
    names: tuple[str, ...] | None = None
    _item_cost: np.ndarray = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = FORMULATION
    sense: ClassVar[str] = "maximize"

    def __post_init__(self) -> None:
        scores = _real_vector(self.scores, "scores")
        ptr = _int_vector(self.group_ptr, "group_ptr")
        cost = _real_vector(self.flop_cost, "flop_cost")
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "group_ptr", ptr)
        object.__setattr__(self, "flop_cost", cost)
        object.__setattr__(self, "nnz_budget", _int_scalar(self.nnz_budget, "nnz_budget"))
        object.__setattr__(self, "flop_budget", _real_scalar(self.flop_budget, "flop_budget"))
        if self.names is not None:
            object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        self.validate()
        item_cost = np.repeat(self.flop_cost, np.diff(self.group_ptr))
        item_cost.setflags(write=False)
        object.__setattr__(self, "_item_cost", item_cost)

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field if the data do not define a problem."""
        s, ptr, c = self.scores, self.group_ptr, self.flop_cost
        check_finite_nonnegative(s, "scores")
        if ptr.size < 1:
            raise ValueError("group_ptr: must have L+1 >= 1 entries")
        if ptr[0] != 0:
            raise ValueError(f"group_ptr: must start at 0, starts at {int(ptr[0])}")
        if np.any(np.diff(ptr) < 0):
            raise ValueError("group_ptr: must be non-decreasing")
        if ptr[-1] != s.size:
            raise ValueError(
                f"group_ptr: must end at the number of scores p={s.size}, ends at {int(ptr[-1])}"
            )
        if c.size != ptr.size - 1:
            raise ValueError(
                f"flop_cost: needs one entry per layer (L={ptr.size - 1}), has {c.size}"
            )
        if not np.all(np.isfinite(c)):
            raise ValueError("flop_cost: contains NaN or inf")
        if np.any(c <= 0):
            raise ValueError("flop_cost: must be > 0 for every layer")
        if self.nnz_budget < 0:
            raise ValueError(f"nnz_budget: must be >= 0, got {self.nnz_budget}")
        if not np.isfinite(self.flop_budget) or self.flop_budget < 0:
            raise ValueError(f"flop_budget: must be finite and >= 0, got {self.flop_budget}")
        if self.names is not None and len(self.names) != c.size:
            raise ValueError(f"names: needs one name per layer (L={c.size}), has {len(self.names)}")

    # ----------------------------------------------------------------------------- shape
    @property
    def num_items(self) -> int:
        return int(self.scores.size)

    @property
    def num_groups(self) -> int:
        return int(self.flop_cost.size)

    @property
    def group_sizes(self) -> np.ndarray:
        return np.diff(self.group_ptr)

    @property
    def item_cost(self) -> np.ndarray:
        """Per-item MAC cost c_{g(i)} (read-only)."""
        return self._item_cost

    @property
    def total_flops(self) -> float:
        return float(self.group_sizes @ self.flop_cost)

    def group_counts(self, x: np.ndarray) -> np.ndarray:
        """Number of selected items in each layer (int64[L])."""
        return segment_count(np.asarray(x, dtype=bool), self.group_ptr)

    # ----------------------------------------------------------------------------- evaluation
    def evaluate(self, x) -> Evaluation:
        """Objective and constraint usage of a 0/1 selection, recomputed in float64."""
        xb = as_binary_vector(x, self.num_items)
        counts = self.group_counts(xb)
        nnz = int(counts.sum())
        flops = float(counts @ self.flop_cost)
        objective = segment_sum_selected(self.scores, xb, self.group_ptr)
        return Evaluation(
            objective=objective,
            usage={"nnz": float(nnz), "flops": flops},
            limits={"nnz": float(self.nnz_budget), "flops": float(self.flop_budget)},
        )

    def canonical(self, x) -> np.ndarray:
        """A 0/1 decision as a bool array of length p (raises ``ValueError`` otherwise)."""
        return as_binary_vector(x, self.num_items)

    def is_feasible(self, x, tol: float = 1e-9) -> bool:
        """True when x is 0/1 of the right length and meets both budgets (relative tol on FLOPs)."""
        try:
            ev = self.evaluate(x)
        except ValueError:
            return False
        return ev.is_feasible(tol)

    # ----------------------------------------------------------------------------- exchange
    def save(self, path: str | os.PathLike) -> None:
        arrays = {
            "formulation": np.array(FORMULATION),
            "scores": self.scores,
            "group_ptr": self.group_ptr,
            "flop_cost": self.flop_cost,
            "nnz_budget": np.int64(self.nnz_budget),
            "flop_budget": np.float64(self.flop_budget),
        }
        if self.names is not None:
            arrays["names"] = np.array(self.names, dtype=np.str_)
        save_npz_atomic(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> JointBudgetProblem:
        data = load_npz_strict(path, FORMULATION)
        required = ("scores", "group_ptr", "flop_cost", "nnz_budget", "flop_budget")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{missing[0]}: missing from {os.fspath(path)}")
        _require_dtype(data["scores"], "scores", "f")
        _require_dtype(data["flop_cost"], "flop_cost", "f")
        _require_dtype(data["group_ptr"], "group_ptr", "iu")
        names = None
        if "names" in data:
            if data["names"].dtype.kind != "U" or data["names"].ndim != 1:
                raise ValueError("names: must be a 1-D array of strings")
            names = tuple(data["names"].tolist())
        return cls(
            scores=data["scores"],
            group_ptr=data["group_ptr"],
            flop_cost=data["flop_cost"],
            nnz_budget=read_scalar(data["nnz_budget"], "nnz_budget", "iu"),
            flop_budget=read_scalar(data["flop_budget"], "flop_budget", "iuf"),
            names=names,
        )

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


# --------------------------------------------------------------------------------- coercion
def _real_vector(value, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: must be an array of real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: must be 1-D, got shape {arr.shape}")
    out = np.array(arr, dtype=np.float64)
    out.setflags(write=False)
    return out


def _int_vector(value, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name}: must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: must hold integers")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: must be an array of integers, got dtype {arr.dtype}")
    out = np.array(arr, dtype=np.int64)
    out.setflags(write=False)
    return out


def _int_scalar(value, name: str) -> int:
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name}: must be an integer, got a bool")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be an integer, got {value!r}") from None
    if not np.isfinite(f) or f != np.floor(f):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    return int(value) if isinstance(value, int | np.integer) else int(f)


def _real_scalar(value, name: str) -> float:
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name}: must be a number, got a bool")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a number, got {value!r}") from None


def _require_dtype(arr: np.ndarray, name: str, kinds: str) -> None:
    if arr.dtype.kind not in kinds:
        want = {"f": "float", "iu": "integer"}.get(kinds, kinds)
        raise ValueError(f"{name}: must have a {want} dtype, has {arr.dtype}")
