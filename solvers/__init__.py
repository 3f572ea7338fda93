"""pruneopt.solvers — running declared models exactly, fast algorithms, results, cross-checks.

Never imports torch (import direction: formulations ← solvers ← models ← reports).
"""

from pruneopt.solvers.crosscheck import crosscheck
from pruneopt.solvers.registry import available_solvers, solve
from pruneopt.solvers.result import SolveResult

__all__ = ["SolveResult", "available_solvers", "crosscheck", "solve"]
