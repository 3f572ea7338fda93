"""What the four teaching scripts share: the trimmed Pyomo printout, the sense-aware gap, the
command line and the machine-readable last line. Each script stays readable on its own; this
module only holds the scaffolding around the formulation it teaches."""

from __future__ import annotations

import argparse
import io
import json
import re


def parse_args(doc: str, argv=None) -> argparse.Namespace:
    """``--seed`` (of the toy weights) and ``--quiet`` (skip the declared model)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the toy weights (default 0)")
    ap.add_argument("--quiet", action="store_true", help="skip the declared model")
    return ap.parse_args(argv)


def declared_model_text(model, max_rows: int = 6, max_width: int = 200) -> str:
    """``model.pprint()`` with long tables and long expressions trimmed."""
    buf = io.StringIO()
    model.pprint(ostream=buf)
    out, run = [], []
    row = re.compile(r"^\s{8,}\S.* : ")  # a row of a component's table

    def flush():
        if len(run) > max_rows:
            out.extend(run[: max_rows - 2])
            out.append(f"{run[0][:len(run[0]) - len(run[0].lstrip())]}... "
                       f"({len(run) - (max_rows - 1)} more rows) ...")
            out.append(run[-1])
        else:
            out.extend(run)
        run.clear()

    for line in buf.getvalue().splitlines():
        if len(line) > max_width:
            line = line[: max_width - 5] + " ..."
        if row.match(line) and "Key" not in line:
            run.append(line)
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out)


def sense_gap(sense: str, reference: float, value: float) -> float:
    """How much worse ``value`` is than ``reference``, relative to |reference| (≥ 0)."""
    diff = reference - value if sense == "maximize" else value - reference
    return diff / abs(reference) if reference != 0 else (0.0 if diff == 0 else float("inf"))


def print_result(result: dict) -> None:
    """The last line of every script: ``RESULT {json}`` (read by tests/test_examples.py)."""
    print("RESULT " + json.dumps(result))


def compare_and_finish(script: str, problem, seed: int, runs: dict, *, exact: str, other: str,
                       fast: str, bruteforce: float, constraints: list[str],
                       bound_what: str, digits: int = 4, extra: dict | None = None) -> int:
    """Print the fast-vs-exact gap, the fast solver's certified gap and the agreement of the
    exact solver with the brute force; then the ``RESULT`` line (with ``extra`` keys).
    Returns the exit code 0."""
    ex, fa = runs[exact], runs[fast]
    gap = sense_gap(problem.sense, ex.objective, fa.objective)
    worse, cert = (("(exact - fast)", "(bound - fast)") if problem.sense == "maximize" else
                   ("(fast - exact)", "(fast - bound)"))
    print(f"gap fast vs exact     {worse}/|exact|            = {gap:.3e}")
    print(f"certified gap of fast {cert}/max(|bound|,|fast|) = {fa.gap:.3e}"
          f"   (bound {fa.bound:.{digits}f}: {bound_what})")
    agree = abs(ex.objective - bruteforce) <= 1e-9 * max(1.0, abs(bruteforce))
    print(f"exact == brute force: {agree}")
    print_result({
        "script": script, "formulation": problem.kind, "sense": problem.sense, "seed": seed,
        "exact_solver": exact, "exact": ex.objective, "exact_bound": ex.bound,
        "exact_proven": ex.proven_optimal, "exact_other": runs[other].objective,
        "fast_solver": fast, "fast": fa.objective, "fast_bound": fa.bound,
        "bruteforce": bruteforce, "gap": gap, "certified_gap": fa.gap,
        "constraints": constraints, **(extra or {}),
    })
    return 0
