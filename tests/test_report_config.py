"""``pruneopt report --config FILE``: one's own study rendered as the report; a bad config fails
before any job or file."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from pruneopt.cli import main

CONFIG = """
[study]
name = "mine"
seed = 3
time_limit = 5.0

[[instances]]
formulation = "allocation"
sizes = [8]
budgets = [0.4, 0.7]
solvers = ["exact", "cpsat", "fast", "uniform"]

[[instances]]
formulation = "channels"
sizes = [4]
budgets = [0.5]
solvers = ["exact", "pyomo-highs", "fast", "global-threshold"]
"""


def test_report_from_config(tmp_path, capsys):
    cfg = tmp_path / "study.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "rep"
    code = main(["report", "--config", str(cfg), "--out", str(out), "--no-progress",
                 "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    for name in ("index.html", "report.md", "rows.csv", "rows.parquet"):
        assert (out / name).stat().st_size > 0
    rows = pd.read_csv(out / "rows.csv")
    assert set(rows["formulation"]) == {"allocation", "channels"}
    assert len(rows) == 2 * 4 + 4  # instances × solvers
    assert (rows["verdict"] == "ok").all()
    exact = rows[rows["solver"] == "exact"]
    assert exact["proven_optimal"].all()
    assert pd.read_parquet(out / "rows.parquet").shape == rows.shape
    html = (out / "index.html").read_text()
    assert "<script" not in html and not re.search(r"(src|href)=\"https?:", html)
    assert html.count("data:image/png;base64,") >= 2  # gap and seconds plots embedded
    md = (out / "report.md").read_text()
    assert "Study **mine**" in md and "global-threshold" in md


@pytest.mark.parametrize("body, word", [
    ('[[instances]]\nformulation = "joint"\nsizes = [20]\nbudgets = [0.5]\nsolvers = ["nope"]\n',
     "solver"),
    ('[[instances]]\nformulation = "knapsack"\nsizes = [20]\nbudgets = [0.5]\n', "formulation"),
    ('[[instances]]\nformulation = "joint"\nsizes = [20]\nbudgets = [1.5]\n', "budgets"),
    ('[[networks]]\nmodel = "vgg99"\nflops = [0.5]\n', "model"),
])
def test_bad_config_fails_before_any_job(tmp_path, capsys, body, word):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    out = tmp_path / "never"
    code = main(["report", "--config", str(cfg), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and word in err and len(err.splitlines()) == 1
    assert not out.exists()
