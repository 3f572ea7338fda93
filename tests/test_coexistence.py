"""highspy and ortools must share one process (DESIGN §7): import both, in either order, in a
fresh interpreter, and solve a tiny model with each."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

HIGHS = """
import highspy
import numpy as np
h = highspy.Highs()
h.setOptionValue("output_flag", False)
lp = highspy.HighsLp()
lp.num_col_, lp.num_row_ = 2, 1
lp.sense_ = highspy.ObjSense.kMaximize
lp.col_cost_ = np.array([3.0, 2.0])
lp.col_lower_, lp.col_upper_ = np.zeros(2), np.ones(2)
lp.row_lower_, lp.row_upper_ = np.array([-highspy.kHighsInf]), np.array([1.0])
lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
lp.a_matrix_.start_ = np.array([0, 1, 2], dtype=np.int32)
lp.a_matrix_.index_ = np.array([0, 0], dtype=np.int32)
lp.a_matrix_.value_ = np.array([1.0, 1.0])
lp.integrality_ = [highspy.HighsVarType.kInteger] * 2
h.passModel(lp)
h.run()
assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
assert abs(h.getInfo().objective_function_value - 3.0) < 1e-9
print("highs ok")
"""

CPSAT = """
from ortools.sat.python import cp_model
m = cp_model.CpModel()
a, b = m.new_bool_var("a"), m.new_bool_var("b")
m.add(a + b <= 1)
m.maximize(3 * a + 2 * b)
s = cp_model.CpSolver()
assert s.solve(m) == cp_model.OPTIMAL
assert s.objective_value == 3
print("cpsat ok")
"""

IMPORT_HIGHS, IMPORT_ORTOOLS = "import highspy\n", "import ortools.sat.python.cp_model\n"


@pytest.mark.parametrize("first", ["highspy", "ortools"])
def test_highspy_and_ortools_in_one_process(first):
    imports = (IMPORT_HIGHS + IMPORT_ORTOOLS if first == "highspy"
               else IMPORT_ORTOOLS + IMPORT_HIGHS)
    code = imports + textwrap.dedent(HIGHS) + textwrap.dedent(CPSAT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["highs", "ok", "cpsat", "ok"]


def test_pruneopt_solves_with_both_backends_in_one_process():
    code = textwrap.dedent("""
        import pruneopt
        p = pruneopt.JointBudgetProblem([5.0, 1.0, 3.0], [0, 3], [1.0], 2, 10.0)
        a = pruneopt.solve(p, "cpsat")
        b = pruneopt.solve(p, "highs")
        c = pruneopt.solve(p, "pyomo-highs")
        assert a.objective == b.objective == c.objective == 8.0, (a, b, c)
        assert a.proven_optimal and b.proven_optimal and c.proven_optimal
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"
