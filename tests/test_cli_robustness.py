"""Issue 15: what the command line does with output paths it cannot use, a user's model that
raises, a switch given a non-boolean, a closed stdout, and the LP export's stderr.

Every command that writes checks its output paths before any work: an unusable path is one
line ``pruneopt: error: <flag>: <what>`` and exit code 2, nothing written, no solver, training
or pipeline run (the work functions are replaced by tripwires here, so a check that came after
the work would fail the test rather than pass it). Tests run as root, so "cannot be written"
is a path under /proc (its parent exists, but nothing can be created in it).
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import re
import subprocess
import sys
import time

import pytest

from pruneopt.cli import main
from pruneopt.formulations.files import check_output_dir, check_output_file, current_umask
from pruneopt.formulations.joint.generate import generate_joint

CONFIG = """\
[study]
name = "robust"

[[instances]]
formulation = "joint"
sizes = [8]
budgets = [0.5]
solvers = ["falcon"]
"""
TABLE = "layer,option,loss,nnz,flops\na,0.5,0.5,5,10\na,1.0,0,10,20\nb,0.5,3,5,20\nb,1.0,0,10,40\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny joint instance, a loss table and a one-job sweep config (outside the test's own
    directory, so that "nothing written" can compare that directory before and after)."""
    d = tmp_path_factory.mktemp("robust-inputs")
    generate_joint(layers=2, items=8, seed=1).save(d / "inst.npz")
    (d / "table.csv").write_text(TABLE)
    (d / "study.toml").write_text(CONFIG)
    return {"INST": str(d / "inst.npz"), "TABLE": str(d / "table.csv"),
            "CONFIG": str(d / "study.toml")}


def run(capsys, argv: list[str]) -> tuple[int, str, str, float]:
    start = time.perf_counter()
    code = main([str(a) for a in argv])
    seconds = time.perf_counter() - start
    out, err = capsys.readouterr()
    return code, out, err, seconds


def assert_one_line(code: int, out: str, err: str, field: str, *, rc: int = 2) -> str:
    assert code == rc, (code, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(rf"^pruneopt: error: {field}: ", lines[0]), lines[0]
    return lines[0]


def tree(path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, name), path)
                  for root, dirs, files in os.walk(path) for name in dirs + files)


# --------------------------------------------------------------------- every command × path
WORK = [  # (module, attribute): what would do the work; none of it may run on a bad path
    ("pruneopt.solvers", "solve"),
    ("pruneopt.solvers.registry", "solve"),
    ("pruneopt.solvers.crosscheck", "crosscheck"),
    ("pruneopt.formulations.joint.generate", "generate_joint"),
    ("pruneopt.models.joint_qp_instances", "network_problem"),
    ("pruneopt.models.digits", "trained_model"),
    ("pruneopt.models.workflows.loading", "resolve_model"),
    ("pruneopt.models.workflows.prune", "run_prune"),
    ("pruneopt.models.workflows.structured", "run_structured"),
    ("pruneopt.models.workflows.channels", "run_channels"),
    ("pruneopt.models.workflows.allocate", "run_allocate"),
    ("pruneopt.reports.studies.sweep", "run_sweep"),
    ("pruneopt.reports.build", "build_report"),
]
WARM = ["pruneopt.reports.studies.config", "pruneopt.cli_prune", "pruneopt.cli_channels",
        "pruneopt.cli_allocate", "pruneopt.cli_sweep"]  # imported here, not timed below


@pytest.fixture
def tripwires(monkeypatch):
    """Replace every work function (and the Pyomo declaration that export writes) by one that
    fails the test if it is called."""
    from pruneopt import JointBudgetProblem

    def tripwire(name):
        def fail(*args, **kwargs):
            raise AssertionError(f"{name} ran before the output path was checked")
        return fail

    for module, attr in WORK:
        monkeypatch.setattr(importlib.import_module(module), attr, tripwire(f"{module}.{attr}"))
    monkeypatch.setattr(JointBudgetProblem, "to_pyomo", tripwire("to_pyomo"))
    for module in WARM:
        importlib.import_module(module)


FILE_COMMANDS = {  # name: (argv with OUT, the flag's field)
    "solve": (["solve", "INST", "--solver", "falcon", "--save-solution", "OUT"],
              "save_solution"),
    "crosscheck": (["crosscheck", "INST", "--solvers", "falcon", "--csv", "OUT"], "csv"),
    "export-lp": (["export", "INST", "--format", "lp", "--out", "OUT"], "out"),
    "export-mps": (["export", "INST", "--format", "mps", "--out", "OUT"], "out"),
    "generate-joint": (["generate", "joint", "--layers", "2", "--items", "8", "--seed", "1",
                        "--out", "OUT"], "out"),
    "generate-joint-qp": (["generate", "joint-qp", "--model", "digits-mlp", "--items", "20",
                           "--calibration", "4", "--seed", "1", "--out", "OUT"], "out"),
    "sweep": (["sweep", "CONFIG", "--no-progress", "--out", "OUT"], "out"),
    "channels-tp-plan": (["channels", "--model", "digits-mlp", "--flops", "0.5", "--solver",
                          "fast", "--export-tp-plan", "OUT"], "export_tp_plan"),
}
DIR_COMMANDS = {
    "allocate-table": (["allocate", "--table", "TABLE", "--flops", "0.75", "--solver", "exact",
                        "--out", "OUT"], "out"),
    "allocate-model": (["allocate", "--model", "digits-mlp", "--flops", "0.5", "--out", "OUT"],
                       "out"),
    "channels": (["channels", "--model", "digits-mlp", "--flops", "0.5", "--solver", "fast",
                  "--out", "OUT"], "out"),
    "prune": (["prune", "--model", "digits-mlp", "--flops", "0.5", "--method", "magnitude",
               "--out", "OUT"], "out"),
    "prune-structured": (["prune", "--model", "digits-cnn", "--method", "fair", "--out", "OUT"],
                         "out"),
    "report": (["report", "--quick", "--no-progress", "--out", "OUT"], "out"),
}
FILE_KINDS = {  # kind: the unusable path, under the test's directory D
    "parent-is-a-file": "D/afile/out.dat",
    "parent-missing": "D/missing/out.dat",
    "cannot-be-written": "/proc/pruneopt-test-out.dat",
    "is-a-directory": "D/adir",
}
DIR_KINDS = {  # a missing parent is created (mkdir -p) unless it cannot be: under /proc
    "parent-is-a-file": "D/afile/out",
    "parent-missing": "/proc/pruneopt-missing/out",
    "cannot-be-created": "/proc/pruneopt-test",
    "cannot-be-written": "/proc",
    "is-a-file": "D/afile",
}
CASES = ([pytest.param(FILE_COMMANDS[c], p, id=f"{c}-{k}")
          for c in FILE_COMMANDS for k, p in FILE_KINDS.items()]
         + [pytest.param(DIR_COMMANDS[c], p, id=f"{c}-{k}")
            for c in DIR_COMMANDS for k, p in DIR_KINDS.items()])


@pytest.mark.parametrize(("command", "path"), CASES)
def test_unusable_output_path_is_refused_before_any_work(command, path, inputs, tripwires,
                                                         tmp_path, capsys):
    argv_template, field = command
    (tmp_path / "afile").write_text("a file\n")
    (tmp_path / "adir").mkdir()
    out_path = path.replace("D/", f"{tmp_path}/")
    before = tree(tmp_path)
    argv = [inputs.get(a, out_path if a == "OUT" else a) for a in argv_template]
    code, out, err, seconds = run(capsys, argv)
    line = assert_one_line(code, out, err, field)
    assert out_path in line
    assert tree(tmp_path) == before  # nothing written, no temporary file left
    # no solve, training or pipeline ran: the tripwires prove it; the clock says so too (the
    # check takes milliseconds; the bound leaves room for a loaded 2-core CI machine, and any
    # training or solve the tripwires missed takes longer)
    assert seconds < 3.0


@pytest.mark.parametrize("argv", [["sweep", "CONFIG", "--no-progress"], ["report", "--quick"]])
def test_default_output_paths_are_checked_too(argv, inputs, tripwires, monkeypatch, capsys):
    """``sweep`` writes ``<study name>.csv`` and ``report`` ``pruneopt-report/`` in the current
    directory when --out is not given: an unwritable one is refused the same way."""
    monkeypatch.chdir("/proc")
    code, out, err, _ = run(capsys, [inputs.get(a, a) for a in argv])
    assert "/proc" in assert_one_line(code, out, err, "out")


def test_a_missing_output_directory_is_still_created(inputs, tmp_path, capsys):
    """``--out DIR`` that does not exist yet works as before, missing parents included."""
    out_dir = tmp_path / "new" / "run"
    code, _, err, _ = run(capsys, ["allocate", "--table", inputs["TABLE"], "--flops", "0.75",
                                   "--solver", "exact", "--out", out_dir])
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["problem.npz", "record.json"]


@pytest.mark.parametrize("argv", [
    ["solve", "INST", "--solver", "falcon", "--save-solution", "D/sol.npz"],
    ["crosscheck", "INST", "--solvers", "falcon", "--csv", "D/cc.csv"],
    ["export", "INST", "--format", "lp", "--out", "D/m.lp"],
    ["export", "INST", "--format", "mps", "--out", "D/m.mps"],
    ["generate", "joint", "--layers", "2", "--items", "8", "--seed", "1", "--out", "D/g.npz"],
    ["allocate", "--table", "TABLE", "--flops", "0.75", "--solver", "exact", "--out", "D/run"],
], ids=["solve", "crosscheck", "export-lp", "export-mps", "generate", "allocate"])
def test_outputs_are_written_whole_with_the_umask_permissions(argv, inputs, tmp_path, capsys):
    """Every file lands under its own name (no temporary file left beside it) with the mode a
    plain open() would give it: 0666 minus the umask."""
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        code, _, err, _ = run(capsys, [inputs.get(a, a.replace("D/", f"{tmp_path}/"))
                                       for a in argv])
    finally:
        os.umask(old)
    assert code == 0, err
    files = [os.path.join(root, f) for root, _, names in os.walk(tmp_path) for f in names]
    assert files and not [f for f in files if os.path.basename(f).startswith(".")]
    assert {oct(os.stat(f).st_mode & 0o777) for f in files} == {oct(0o640)}


def test_an_io_error_after_the_checks_is_one_line_exit_1(inputs, tmp_path, monkeypatch, capsys):
    """A write that still fails (a full disk) is one line and exit 1, not a traceback."""
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pruneopt.cli.atomic_write", full_disk)
    code, out, err, _ = run(capsys, ["solve", inputs["INST"], "--solver", "falcon",
                                     "--save-solution", tmp_path / "sol.npz"])
    assert code == 1 and out == ""
    assert err.strip().splitlines() == ["pruneopt: error: [Errno 28] No space left on device"]


def test_the_checks_create_nothing(tmp_path):
    """The library checks: a good path passes and nothing is left behind (the probe file is
    removed, a missing directory is not created)."""
    assert check_output_file(tmp_path / "a.npz", "out") == str(tmp_path / "a.npz")
    assert check_output_dir(tmp_path / "new", "out") == str(tmp_path / "new")
    assert check_output_dir(tmp_path, "out") == str(tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"^out: /dev/null exists and is not a regular file"):
        check_output_file("/dev/null", "out")
    with pytest.raises(ValueError, match=r"^out: the output path is empty"):
        check_output_file("", "out")


def test_the_library_writers_check_too(tmp_path):
    """``run_sweep`` and ``build_report`` refuse an unusable path before any job."""
    from pruneopt.reports.build import build_report
    from pruneopt.reports.studies.sweep import run_sweep

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"^out: .*cannot create files in /proc"):
        run_sweep([], "/proc/rows.csv")
    with pytest.raises(ValueError, match=r"^out: .*afile is a file, not a directory"):
        build_report(tmp_path / "afile", quick=True, progress=False)


# ----------------------------------------------------------------------- a user's model
MODULE = """\
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(64, 3))


def raises_runtime():
    raise RuntimeError("the weights file is missing")


def raises_other():
    return {}["weights"]
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module in the current directory (which is on sys.path here: see the next test)."""
    name = f"robust_user_model_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize(("func", "message"), [
    ("raises_runtime", "RuntimeError: the weights file is missing"),
    ("raises_other", "KeyError: 'weights'"),
])
def test_a_model_function_that_raises_is_one_line_exit_2(user_module, func, message, capsys):
    code, out, err, _ = run(capsys, ["channels", "--model", f"{user_module}:{func}",
                                     "--input-shape", "1,4,4", "--flops", "0.5",
                                     "--solver", "fast"])
    line = assert_one_line(code, out, err, "model")
    assert f"{user_module}:{func}" in line and message in line


def test_a_model_module_in_the_current_directory_is_found(user_module, monkeypatch, capsys):
    """... even when the current directory is not on sys.path, as under the ``pruneopt``
    console script (whose sys.path[0] is the venv's bin directory, unlike ``python -m``)."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", os.getcwd())])
    code, out, err, _ = run(capsys, ["channels", "--model", f"{user_module}:build",
                                     "--input-shape", "1,4,4", "--flops", "0.5",
                                     "--solver", "fast", "--calibration", "4",
                                     "--eval-samples", "16", "--json"])
    assert code == 0, err
    record = json.loads(out)
    assert record["model"] == f"{user_module}:build" and record["macs_kept"] <= 0.5
    assert os.getcwd() not in sys.path  # only while the user's code runs


# ----------------------------------------------------------------------------- switches
@pytest.mark.parametrize("value", ["maybe", "", "2", "on", "none"])
def test_a_switch_takes_only_true_or_false(inputs, value, capsys):
    code, out, err, _ = run(capsys, ["solve", inputs["INST"], "--solver", "highs",
                                     "--option", f"fixing={value}"])
    line = assert_one_line(code, out, err, "option")
    assert "fixing" in line and repr(value) in line


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("TRUE", True), ("Yes", True), ("1", True),
    ("false", False), ("False", False), ("no", False), ("NO", False), ("0", False),
])
def test_a_switch_accepts_the_usual_spellings(inputs, value, expected, capsys):
    code, out, err, _ = run(capsys, ["solve", inputs["INST"], "--solver", "highs", "--json",
                                     "--option", f"fixing={value}"])
    assert code == 0, err
    assert json.loads(out)["options"]["fixing"] is expected


# ------------------------------------------------------------------ subprocess behaviour
def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pruneopt", *map(str, args)],
                          capture_output=True, text=True, timeout=180, check=False, **kwargs)


@pytest.mark.parametrize("argv", [["solvers"], ["solve", "INST", "--solver", "falcon", "--json"],
                                  ["crosscheck", "INST", "--solvers", "falcon,magnitude"]],
                         ids=["solvers", "solve-json", "crosscheck"])
def test_a_closed_stdout_ends_quietly(argv, inputs):
    """``pruneopt ... | head -c 300``: the reader is gone before anything is written (its end
    of the pipe is closed first), so the write fails with EPIPE every time."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "pruneopt",
                               *(inputs.get(a, a) for a in argv)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=180,
                              check=False)
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 1


@pytest.mark.parametrize("fmt", ["lp", "mps"])
def test_export_prints_nothing_but_its_one_line(inputs, tmp_path, fmt):
    out = tmp_path / f"m.{fmt}"
    proc = cli("export", inputs["INST"], "--format", fmt, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == f"wrote {out} ({fmt})\n"
    assert "x(0)" in out.read_text()
