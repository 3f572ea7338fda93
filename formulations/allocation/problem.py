"""Layer budget allocation — a multiple-choice knapsack with an NNZ and a FLOP budget.

    minimize    Σ_g Σ_{j∈J_g} e_{gj} y_{gj}
    subject to  Σ_{j∈J_g} y_{gj} = 1                 for each layer g   (one option per layer)
                Σ_g Σ_j n_{gj} y_{gj} ≤ K                                (NNZ budget)
                Σ_g Σ_j f_{gj} y_{gj} ≤ F                                (FLOP budget, MACs)
                y ∈ {0, 1}

Layers g = 0..L-1 each offer options j ∈ J_g (e.g. keep fractions 0.1, 0.2, .., 1.0); option j
of layer g has an estimated loss increase e_{gj} (any real number, usually ≥ 0: from the
quadratic model, an OBS/OBC layer error or a heuristic score), keeps n_{gj} ≥ 0 weights
(integers) and costs f_{gj} ≥ 0 MACs per sample. Layers may offer different numbers of options:
the data are stored ragged, as flat arrays over all options with ``option_ptr`` (layer g owns the
options ``option_ptr[g]:option_ptr[g+1]``, every layer at least one).

Absent budgets: ``nnz_budget = -1`` means "no NNZ budget" and ``flop_budget = inf`` means "no
FLOP budget" (``None`` is accepted for either when constructing, and so is ``inf`` for the NNZ
budget; they are stored as -1 and inf). An absent budget has the limit +inf in
:meth:`AllocationProblem.evaluate`.

The decision. The canonical form — what :meth:`AllocationProblem.canonical` returns and
``SolveResult.x`` holds — is the **choice vector** ``int64[L]``: ``choice[g]`` is the index of the
chosen option within layer g (0 ≤ choice[g] < |J_g|), so that the flat index of the chosen option
is ``option_ptr[g] + choice[g]``. ``evaluate``/``is_feasible`` also accept the 0/1 vector y over all
options (length ``option_ptr[-1]``, exactly one 1 per layer; a bool array is always read as y).
When every layer has exactly one option the two forms have the same length; an all-ones vector is
then read as y and anything else as a choice vector (both mean the same single decision).

Exchange format (one ``.npz``, no pickles): ``formulation`` = "allocation"; ``loss`` float64[n];
``nnz`` int64[n] ≥ 0; ``flops`` float64[n] ≥ 0; ``option_ptr`` int64[L+1] (0, strictly increasing,
ends at n); ``nnz_budget`` int64 scalar (≥ 0, or -1 for none); ``flop_budget`` float64 scalar
(≥ 0, or inf for none); optional ``names`` str[L] (one per layer) and ``option_labels``
float64[n] (what each option is, e.g. its keep fraction).

CSV loss table (:meth:`AllocationProblem.from_csv` / :meth:`AllocationProblem.to_csv`): a header
row naming the columns ``layer, option, loss, nnz, flops`` (in any order; other columns are
ignored), then one row per option. ``layer`` is the layer's name: layers are numbered in order of
first appearance and a layer's options keep the file's row order; ``option`` is a number saying
what the option is (e.g. its keep fraction; stored as ``option_labels``); ``loss`` a real number;
``nnz`` an integer ≥ 0; ``flops`` a number ≥ 0. Budgets are not part of the table: they are
arguments of ``from_csv`` (absolute, or as fractions of the densest choice).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pruneopt.formulations.base import Formulation, datum
from pruneopt.formulations.checks import check_pointer, fraction, int_scalar, real_scalar
from pruneopt.formulations.common import Evaluation
from pruneopt.formulations.files import atomic_write

NO_NNZ_BUDGET = -1  # the stored value of an absent NNZ budget
CSV_COLUMNS = ("layer", "option", "loss", "nnz", "flops")


def _nnz_budget(value, name: str) -> int:
    """K, or -1 for no NNZ budget (given as None, -1 or inf)."""
    if value is None or (isinstance(value, float | np.floating) and value == math.inf):
        return NO_NNZ_BUDGET
    k = int_scalar(value, name)
    if k < NO_NNZ_BUDGET:
        raise ValueError(f"{name}: must be >= 0, or -1 for no budget, got {k}")
    return k


def _flop_budget(value, name: str) -> float:
    """F, or inf for no FLOP budget (given as None or inf)."""
    if value is None:
        return math.inf
    f = real_scalar(value, name)
    if math.isnan(f) or f < 0:
        raise ValueError(f"{name}: must be >= 0 (or inf/None for no budget), got {value!r}")
    return f


@dataclass(frozen=True, eq=False)
class AllocationProblem(Formulation):
    """Problem data of the layer budget allocation (see the module docstring for the program)."""

    loss: np.ndarray = datum("real")
    nnz: np.ndarray = datum("int", per="option", bound=">= 0")
    flops: np.ndarray = datum("real", per="option", bound=">= 0")
    option_ptr: np.ndarray = datum("int")
    nnz_budget: int = datum("int", 0, coerce=_nnz_budget, default=NO_NNZ_BUDGET)
    flop_budget: float = datum("real", 0, coerce=_flop_budget, default=math.inf)
    names: tuple[str, ...] | None = datum("names", per="layer", optional=True)
    option_labels: np.ndarray | None = datum("real", per="option", optional=True)
    _layer_of: np.ndarray = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "allocation"
    sense: ClassVar[str] = "minimize"

    def _derive(self) -> None:
        layer_of = np.repeat(np.arange(self.num_layers, dtype=np.int64), self.option_counts)
        layer_of.setflags(write=False)
        object.__setattr__(self, "_layer_of", layer_of)

    def validate(self) -> None:
        """Raise ``ValueError`` ("field: message") if the data do not define a problem."""
        self.check_values()
        check_pointer(self.option_ptr, "option_ptr", self.num_options, of="options n",
                      members="options")
        self.check_lengths()

    def dimensions(self) -> dict[str, tuple[str, int]]:
        return {"option": ("n", self.num_options), "layer": ("L", self.num_layers)}

    # ----------------------------------------------------------------------------- shape
    @property
    def num_layers(self) -> int:
        """L, the number of layers."""
        return int(self.option_ptr.size - 1)

    @property
    def num_options(self) -> int:
        """Total number of options n over all layers."""
        return int(self.loss.size)

    @property
    def option_counts(self) -> np.ndarray:
        """|J_g|: the number of options of each layer (int64[L])."""
        return np.diff(self.option_ptr)

    @property
    def layer_of_option(self) -> np.ndarray:
        """The layer g of each flat option index (int64[n], read-only)."""
        return self._layer_of

    @property
    def has_nnz_budget(self) -> bool:
        return self.nnz_budget != NO_NNZ_BUDGET

    @property
    def has_flop_budget(self) -> bool:
        return math.isfinite(self.flop_budget)

    @property
    def nnz_limit(self) -> float:
        """K as a float (+inf when there is no NNZ budget)."""
        return float(self.nnz_budget) if self.has_nnz_budget else math.inf

    @property
    def flop_limit(self) -> float:
        """F (+inf when there is no FLOP budget)."""
        return float(self.flop_budget)

    @property
    def dense_nnz(self) -> int:
        """Σ_g max_j n_gj: the NNZ of the densest choice (the reference of ``keep_nnz``)."""
        return int(np.maximum.reduceat(self.nnz, self.option_ptr[:-1]).sum())

    @property
    def dense_flops(self) -> float:
        """Σ_g max_j f_gj: the MACs of the costliest choice (the reference of ``keep_flops``)."""
        return float(np.maximum.reduceat(self.flops, self.option_ptr[:-1]).sum())

    def flat_index(self, choice) -> np.ndarray:
        """Flat option indices option_ptr[g] + choice[g] of a decision (int64[L])."""
        return self.option_ptr[:-1] + self.canonical(choice)

    def one_hot(self, choice) -> np.ndarray:
        """The 0/1 vector y over all options (bool[n]) of a decision."""
        y = np.zeros(self.num_options, dtype=bool)
        y[self.flat_index(choice)] = True
        return y

    # ----------------------------------------------------------------------------- evaluation
    def canonical(self, x) -> np.ndarray:
        """A decision (choice vector or 0/1 vector y) as the choice vector int64[L].

        Raises ``ValueError`` ("x: ...") when x is neither.
        """
        arr = np.asarray(x)
        L, n = self.num_layers, self.num_options
        if arr.ndim != 1:
            raise ValueError(f"x: must be 1-D, got shape {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"x: must hold numbers, got dtype {arr.dtype}")
        is_y = arr.dtype == np.bool_ or (arr.size == n and (arr.size != L or (
            arr.size > 0 and np.all(arr == 1))))
        if arr.dtype == np.bool_ and arr.size != n:
            raise ValueError(f"x: a 0/1 (bool) decision needs one entry per option ({n}), "
                             f"has {arr.size}")
        if not is_y and arr.size != L:
            raise ValueError(f"x: must be a choice vector of length L={L} or a 0/1 vector of "
                             f"length n={n}, got {arr.size} entries")
        af = arr.astype(np.float64)
        if not np.all(np.isfinite(af)):
            raise ValueError("x: contains NaN or inf")
        rounded = np.rint(af)
        if np.any(np.abs(af - rounded) > 1e-6):
            raise ValueError("x: entries must be integers")
        if is_y:
            if np.any((rounded != 0) & (rounded != 1)):
                raise ValueError("x: a 0/1 decision must hold only 0 and 1")
            yb = rounded.astype(bool)
            per_layer = np.add.reduceat(yb.astype(np.int64), self.option_ptr[:-1])
            if np.any(per_layer != 1):
                g = int(np.flatnonzero(per_layer != 1)[0])
                raise ValueError(f"x: layer {g} has {int(per_layer[g])} options chosen, "
                                 "needs exactly one")
            return (np.flatnonzero(yb) - self.option_ptr[:-1]).astype(np.int64)
        choice = rounded.astype(np.int64)
        sizes = self.option_counts
        bad = (choice < 0) | (choice >= sizes)
        if np.any(bad):
            g = int(np.flatnonzero(bad)[0])
            raise ValueError(f"x: layer {g} has options 0..{int(sizes[g]) - 1}, "
                             f"got {int(choice[g])}")
        return choice

    def evaluate(self, x) -> Evaluation:
        """Objective Σ e y and the usage of both budgets (float64; NNZ summed exactly in int64)."""
        idx = self.flat_index(x)
        objective = float(np.sum(self.loss[idx]))
        nnz = int(np.sum(self.nnz[idx]))
        flops = float(np.sum(self.flops[idx]))
        return Evaluation(
            objective=objective,
            usage={"nnz": float(nnz), "flops": flops},
            limits={"nnz": self.nnz_limit, "flops": self.flop_limit},
        )

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_layers(cls, loss, nnz, flops, nnz_budget=None, flop_budget=None, *, names=None,
                    option_labels=None) -> AllocationProblem:
        """Build from per-layer sequences (``loss[g]`` an array of layer g's option losses, ...)."""
        L = len(loss)
        for name, seq in (("nnz", nnz), ("flops", flops), ("option_labels", option_labels)):
            if seq is not None and len(seq) != L:
                raise ValueError(f"{name}: needs one array per layer (L={L}), has {len(seq)}")
        sizes = [np.asarray(v).size for v in loss]
        for name, seq in (("nnz", nnz), ("flops", flops), ("option_labels", option_labels)):
            if seq is None:
                continue
            for g, v in enumerate(seq):
                if np.asarray(v).size != sizes[g]:
                    raise ValueError(f"{name}: layer {g} has {np.asarray(v).size} entries, "
                                     f"loss has {sizes[g]}")

        def flat(seq):
            return np.concatenate([np.ravel(v) for v in seq]) if L else np.zeros(0)

        return cls(
            loss=flat(loss), nnz=flat(nnz), flops=flat(flops),
            option_ptr=np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
            nnz_budget=nnz_budget, flop_budget=flop_budget, names=names,
            option_labels=None if option_labels is None else flat(option_labels),
        )

    # ----------------------------------------------------------------------------- loss table
    def layer_names(self) -> tuple[str, ...]:
        """``names``, or layer0, layer1, .. when the problem has none."""
        return self.names if self.names is not None else tuple(
            f"layer{g}" for g in range(self.num_layers))

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the loss table (see the module docstring); budgets are not part of it.

        ``option`` is the option label, or the option's index in its layer when the problem has
        no labels; floats are written with ``repr`` so that reading them back is exact.
        """
        names = self.layer_names()
        labels = (self.option_labels.tolist() if self.option_labels is not None else
                  (np.arange(self.num_options) - np.repeat(self.option_ptr[:-1],
                                                           self.option_counts)).tolist())
        layer_of = self.layer_of_option.tolist()
        out = io.StringIO(newline="")
        w = csv.writer(out)
        w.writerow(CSV_COLUMNS)
        for i, (e, n, f) in enumerate(zip(self.loss.tolist(), self.nnz.tolist(),
                                          self.flops.tolist())):
            w.writerow((names[layer_of[i]], repr(labels[i]), repr(e), n, repr(f)))
        atomic_write(path, out.getvalue())

    @classmethod
    def from_csv(cls, path: str | os.PathLike, *, nnz_budget=None, flop_budget=None,
                 keep_nnz: float | None = None, keep_flops: float | None = None
                 ) -> AllocationProblem:
        """Read a loss table (see the module docstring) and attach budgets.

        Each budget is given either absolutely (``nnz_budget``, ``flop_budget``) or as a fraction
        of the densest choice (``keep_nnz``: K = ⌊keep_nnz · Σ_g max_j n_gj⌋, ``keep_flops``:
        F = keep_flops · Σ_g max_j f_gj), or not at all (no such budget).
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ValueError(f"file: {path} does not exist")
        if nnz_budget is not None and keep_nnz is not None:
            raise ValueError("keep_nnz: give nnz_budget or keep_nnz, not both")
        if flop_budget is not None and keep_flops is not None:
            raise ValueError("keep_flops: give flop_budget or keep_flops, not both")
        order: dict[str, int] = {}
        rows: list[tuple[int, float, float, int, float]] = []
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"csv: {path} is empty (needs a header: {', '.join(CSV_COLUMNS)})")
            header = [h.strip().lower() for h in header]
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                raise ValueError(f"csv: {path} lacks the column(s) {', '.join(missing)} "
                                 f"(needs {', '.join(CSV_COLUMNS)})")
            col = {c: header.index(c) for c in CSV_COLUMNS}
            for lineno, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) < len(header):
                    raise ValueError(f"csv: line {lineno} has {len(row)} fields, the header "
                                     f"{len(header)}")
                layer = row[col["layer"]].strip()
                if not layer:
                    raise ValueError(f"csv: line {lineno}: empty layer name")
                g = order.setdefault(layer, len(order))
                rows.append((g, _csv_number(row[col["option"]], "option", lineno),
                             _csv_number(row[col["loss"]], "loss", lineno),
                             _csv_integer(row[col["nnz"]], "nnz", lineno),
                             _csv_number(row[col["flops"]], "flops", lineno)))
        if not rows:
            raise ValueError(f"csv: {path} has no option rows")
        layer = np.array([r[0] for r in rows], dtype=np.int64)
        perm = np.argsort(layer, kind="stable")  # group by layer, file order within a layer
        cols = [np.array([r[k] for r in rows])[perm] for k in range(1, 5)]
        sizes = np.bincount(layer, minlength=len(order))
        ptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        problem = cls(loss=cols[1], nnz=cols[2].astype(np.int64), flops=cols[3], option_ptr=ptr,
                      names=tuple(order), option_labels=cols[0])
        if keep_nnz is not None:
            fraction(keep_nnz, "keep_nnz", low_open=False)
            nnz_budget = int(np.floor(keep_nnz * problem.dense_nnz))
        if keep_flops is not None:
            fraction(keep_flops, "keep_flops", low_open=False)
            flop_budget = float(keep_flops * problem.dense_flops)
        return cls(loss=problem.loss, nnz=problem.nnz, flops=problem.flops, option_ptr=ptr,
                   nnz_budget=nnz_budget, flop_budget=flop_budget, names=problem.names,
                   option_labels=problem.option_labels)

    # ----------------------------------------------------------------------------- declarations
    def to_pyomo(self, loss_scale: float = 1.0, cost_unit: float = 1.0,
                 shift_losses: bool = False):
        """The program as a Pyomo ``ConcreteModel`` (see :mod:`.allocation_pyomo`).

        ``loss_scale`` σ multiplies the objective; ``shift_losses`` subtracts each layer's
        smallest loss from its options and adds the sum back as a constant (an exact
        reformulation: one option per layer is chosen); ``cost_unit`` divides the MACs and the
        FLOP budget by one common factor. The model's objective value is σ · Σ e y.
        """
        from pruneopt.formulations.allocation.pyomo_model import build_pyomo

        return build_pyomo(self, loss_scale=loss_scale, cost_unit=cost_unit,
                           shift_losses=shift_losses)

    def to_cpsat(self, loss_scale: float | None = None):
        """The program as an OR-Tools CP-SAT model with integerised losses.

        Returns ``(model, y_vars, scaling)`` (see :mod:`.allocation_cpsat` for the scale and the
        rounding error that the solver carries into its bound).
        """
        from pruneopt.formulations.allocation.cpsat_model import build_cpsat

        return build_cpsat(self, loss_scale=loss_scale)

    def __repr__(self) -> str:
        K = self.nnz_budget if self.has_nnz_budget else "none"
        F = f"{self.flop_budget:.6g}" if self.has_flop_budget else "none"
        return (f"AllocationProblem(L={self.num_layers}, n={self.num_options}, "
                f"nnz_budget={K}, flop_budget={F})")


# --------------------------------------------------------------------------------- integer data
BUDGET_SLACK = 1e-12  # relative slack when flooring a scaled budget to an integer


def integer_unit(values: np.ndarray, max_digits: int = 6, rtol: float = 1e-12) -> float:
    """Smallest u = 10^k (k ≤ max_digits) making every u·v an integer to ``rtol`` relative
    (so that rounding u·v changes the data by at most float noise); ValueError when none does."""
    for k in range(max_digits + 1):
        u = 10.0**k
        scaled = values * u
        if np.all(np.abs(scaled - np.rint(scaled)) <= rtol * np.maximum(1.0, scaled)):
            if scaled.size and float(scaled.max()) >= 2.0**53:
                break
            return u
    raise ValueError(
        "flops: needs integer MAC counts (or decimals with at most "
        f"{max_digits} digits, below 2^53) to be integerised; got e.g. "
        f"{float(values[np.argmax(np.abs(values - np.rint(values)))]) if values.size else 0.0!r}")


def integer_budget(value: float) -> int:
    """⌊value⌋ allowing a 1e-12 relative slack (a float budget just below an integer)."""
    return int(math.floor(value + BUDGET_SLACK * max(1.0, abs(value))))


# --------------------------------------------------------------------------------- csv cells
def _csv_number(text: str, column: str, lineno: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"csv: line {lineno}: {column} {text!r} is not a number") from None


def _csv_integer(text: str, column: str, lineno: int) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    f = _csv_number(text, column, lineno)
    if not math.isfinite(f) or f != math.floor(f):
        raise ValueError(f"csv: line {lineno}: {column} {text!r} is not an integer")
    return int(f)
