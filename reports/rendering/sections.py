"""The report's content as :class:`Section`\\ s, shared by the Markdown and the HTML renderer
(:mod:`~pruneopt.reports.rendering.markdown`, :mod:`~pruneopt.reports.rendering.html`).

:func:`report_sections` is the whole report: the head line with :func:`outcome_callouts` over
every run (flags, failures, refusals by design, time limits; "all passed" only when there is no
flag, failure or refusal), :func:`unsolved_section` (each run that did not solve, with its
reason), :func:`joint_sections` of the joint-ILP study's rows
(what was run, how to read the gap, the summary per solver, the gap by size with its plots,
flagged runs, instances, versions), then :func:`study_sections` of the sweep part's rows (every
formulation exact against fast, pruning methods on networks, the structured pruners' gaps). A
section names its plots by key; the renderers embed or link them. Section text is the small
Markdown subset that :func:`~pruneopt.reports.rendering.html.markdown_block` converts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from pruneopt.reports.rendering.formatting import fmt, instance_rows, network_rows
from pruneopt.reports.rendering.tables import (
    FAILURES,
    display_summary,
    flag_table,
    flagged,
    gap_by_size,
    gap_table,
    instances_table,
    network_miqp_table,
    network_table,
    outcome_counts,
    outcome_table,
    row_part,
    row_who,
    run_outcomes,
    solver_summary,
    summarize,
    unsolved_runs,
    versions_table,
)

TITLE = "pruneopt optimality-gap report"
FORMULATION_TITLES = {
    "joint": "joint FLOP/NNZ ILP",
    "joint-qp": "joint MIQP (local quadratic model)",
    "allocation": "layer budget allocation (multiple-choice knapsack)",
    "channels": "structured channel selection (bilinear FLOPs)",
}


@dataclass
class Section:
    """One section of the report: a heading, Markdown-subset text, tables (caption, display
    DataFrame), plots (plot key, caption) and text after them."""

    heading: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (plot key, caption)
    after: str = ""


# ------------------------------------------------------------------------------- outcomes
UNSOLVED_HEADING = "Runs that did not solve"
UNSOLVED_LIMIT = 400  # runs listed one by one (all are counted)


def _by_who(rows: pd.DataFrame, mask: pd.Series) -> str:
    """```solver` (formulation ×n, ...); ...`` for the rows of ``mask``: who, where, how
    often."""
    sub = rows[mask]
    items = pd.DataFrame({"who": row_who(sub), "part": row_part(sub)}).value_counts(sort=False)
    out: dict[str, list[str]] = {}
    for (who, part), n in items.items():
        out.setdefault(who, []).append(f"{part} ×{n}")
    return "; ".join(f"`{w}` ({', '.join(v)})" for w, v in out.items())


def outcome_callouts(every: pd.DataFrame, what: str = "runs") -> str:
    """The headline's call-outs over every run of the report: cross-check flags, failures
    (errors, missed budgets), refusals by design and time limits, each counted with who and
    where; "All ... passed" only when there is none of the first three."""
    if not len(every):
        return ""
    c = outcome_counts(every)
    outcome = run_outcomes(every)
    total = c["runs"]
    failed = c["errored"] + c["budget missed"]
    lines = []
    if c["flagged"]:
        flags = flagged(every)
        lines.append(
            f"> **CROSS-CHECK FAILED: {c['flagged']} of {total} {what} carry a cross-check flag "
            f"({', '.join(sorted(set(row_who(flags))))}). Each one is a bug in a "
            "formulation or a solver; see \"Flagged runs\".**")
    if failed or c["refused"]:
        parts = [f"{c['errored']} errored"] if c["errored"] else []
        if c["budget missed"]:
            parts.append(f"{c['budget missed']} missed the budget asked")
        if c["refused"]:
            parts.append(f"{c['refused']} refused by design")
        head = (f"{failed + c['refused']} of {total} {what} errored or were refused "
                f"({', '.join(parts)}); each is listed with its reason in "
                f"\"{UNSOLVED_HEADING}\".")
        lines.append(f"> **{head}**" if failed else f"> Note: {head}")
    if failed:
        lines.append(f"> **Failures: {_by_who(every, outcome.isin(FAILURES))}.**")
    if c["refused"]:
        lines.append(
            f"> Note: refused by design (the solver does not apply to the instance, so it was "
            f"not run; not a failure): {_by_who(every, outcome == 'refused')}.")
    if c["time limit"]:
        lines.append(
            f"> Note: {c['time limit']} run(s) stopped at their time limit, not proven "
            f"(their best decision is kept and its gap to the best bound is an upper bound): "
            f"{_by_who(every, outcome == 'time limit')}.")
    if c["infeasible"]:
        lines.append(f"> Note: {c['infeasible']} run(s) proved their instance infeasible: "
                     f"{_by_who(every, outcome == 'infeasible')}.")
    if not (c["flagged"] or failed or c["refused"]):
        lines.insert(0, f"> All {total} {what} passed the cross-check (no flag: no proven optimum "
                        "beaten, no bound below a feasible objective, no infeasible selection, no "
                        "two proven optima that differ), and none errored or was refused.")
    return "\n\n".join(lines)


def unsolved_section(every: pd.DataFrame) -> Section | None:
    """Every run that did not solve, with its reason (``None`` when every run solved)."""
    detail = unsolved_runs(every, limit=UNSOLVED_LIMIT)
    if not len(detail):
        return None
    total = int((run_outcomes(every) != "solved").sum())
    caption = ("Each run, failures first" if total <= UNSOLVED_LIMIT else
               f"The first {UNSOLVED_LIMIT} of {total} runs, failures first (every one is in "
               "rows.csv)")
    return Section(UNSOLVED_HEADING, (
        "Every run without a proven or feasible answer, per formulation (or model) and solver "
        "(or method). **errored**: a failure (the message says what raised); **budget missed**: "
        "a pruning method that kept more MACs than it was asked to; **refused**: the solver "
        "does not apply to the instance by design (e.g. `dp` is exact on chains only), checked "
        "before running, so it was not run; **time limit**: stopped at its limit with its best "
        "decision, not proven; **infeasible**: proved that no decision meets the budgets."),
        tables=[("Counts", outcome_table(every)), (caption, detail)])


# ----------------------------------------------------------------------------------- joint ILP
def joint_sections(rows: pd.DataFrame, meta: dict) -> list[Section]:
    """The joint-ILP study's sections (the versions section last)."""
    summary = summarize(rows)
    flagged_rows = flagged(rows)
    n_inst = rows["instance"].nunique()
    per_limit = (rows.drop_duplicates("instance").groupby("time_limit")["p"].agg(["min", "max"]))
    limits_txt = ", ".join(
        f"{t:g} s on instances of {lo:,} items" if lo == hi else
        f"{t:g} s on instances of {lo:,}–{hi:,} items"
        for t, lo, hi in zip(per_limit.index, per_limit["min"].astype(int),
                             per_limit["max"].astype(int), strict=True)) or "none"
    mode = "quick" if meta.get("quick") else "full"
    sizes = rows.drop_duplicates("instance").groupby(["shape", "p"], sort=True).size()
    size_txt = ", ".join(f"{int(p):,} items ({shape}, {n} instances)" for (shape, p), n in
                         sorted(sizes.items(), key=lambda kv: kv[0][1]))
    shape_notes = {"random": "Shape `random` has 8–20 layers (Dirichlet sizes, CNN-like MAC costs).",
                   "resnet20": "`resnet20` is the real ResNet-20 (CIFAR, 32×32) layer table.",
                   "mobilenetv1": "`mobilenetv1` is the real MobileNetV1 (224×224) layer table.",
                   "resnet50": "`resnet50` is the real ResNet-50 (224×224) layer table."}
    shape_txt = " ".join(shape_notes.get(sh, f"`{sh}`.") for sh in dict.fromkeys(rows["shape"]))
    exact_tl = rows[(rows["kind"] == "exact") & (rows["status"] == "time_limit")]
    sections = []

    head = (f"Mode **{mode}**, seed {meta.get('seed', 0)}, {n_inst} instances, {len(rows)} solver "
            f"runs, {meta.get('workers', 1)} worker process(es), wall time "
            f"{meta.get('wall_seconds', math.nan):.1f} s. Generated {meta.get('generated', '')} "
            f"on {meta.get('host', '')}.")
    sections.append(Section("", head))
    sections.append(Section("What was run", (
        "The **joint FLOP/NNZ selection** ILP (FALCON): maximize Σ s_i x_i subject to Σ x_i ≤ K "
        "(NNZ budget) and Σ c_g(i) x_i ≤ F (FLOP budget), x binary; s_i ≥ 0 are importance "
        "scores and c_g the MACs per weight of layer g.\n\n"
        f"Generated instances (`generate_joint`): {size_txt}. {shape_txt} Score distributions: "
        f"{', '.join(f'`{d}`' for d in dict.fromkeys(rows['dist']))}. Budgets: K = ⌊keep_nnz·p⌋ "
        "and F = keep_flops · dense MACs, with (keep_nnz, keep_flops) pairs "
        f"{', '.join(f'({a:g}, {b:g})' for a, b in sorted(set(zip(rows['keep_nnz'], rows['keep_flops']))))}."
        " Each instance's seed derives from the study seed and the instance's own parameters, so "
        "the same seed gives the same instances.\n\n"
        "Every solver runs only where it is practical (its largest instance is in the summary "
        f"table below), with a time limit per run of {limits_txt}; a run may overrun its limit by "
        "a few seconds (model building, HiGHS's outside guard). All solvers of an "
        "instance run one after another in one job and are cross-checked together; "
        f"{meta.get('workers', 1)} job(s) ran at a time, so seconds are wall-clock times with "
        "that many jobs sharing the machine.\n\n"
        "**Units.** FLOPs are counted as MACs (multiply-accumulates) per input sample: a Conv2d "
        "weight costs H_out·W_out MACs, a Linear weight 1. Bias, BatchNorm and activations are "
        "not counted (they are not selection variables). NNZ counts prunable weights.")))

    sections.append(Section("How to read the gap", (
        "**Gap to the best bound** (the honest figure): per instance, the best bound is the bound "
        "of the best solver that proved optimality there (its bound meets its objective within "
        "1e-9 relative), else the smallest valid bound any solver reported (FALCON's LP dual, an "
        "exact solver's dual bound at its time limit, or a heuristic's single-row LP bound). A "
        "row's gap to it is |best bound − objective| / max(|best bound|, |objective|), the "
        "objective always recomputed in numpy from the returned selection. Where an exact solver "
        "proved the optimum this is the true relative loss; elsewhere it is an upper bound on "
        "it.\n\n"
        "A solver's own `gap` (in rows.csv) compares it only with its own bound; a heuristic's own "
        "bound is weak, so its own gap overstates its loss. **Verdicts** come from "
        "`crosscheck`: `beaten-optimum`, `bound-below-feasible`, `infeasible-x`, `optima-differ` "
        "— any of them is a bug; `ok` is a run cross-checked without a flag, `not-checked` a "
        "run that returned nothing to check (an error or a refusal).")))

    sections.append(Section("Summary per solver", (
        "solved = runs that returned a feasible selection; proven optimal = bound meets the "
        "objective within 1e-9 (only exact solvers can); gaps are over solved runs; flags = "
        "cross-check flags (bugs)."
        + ("" if exact_tl.empty else
           f"\n\nExact solvers stopped at their time limit in **{len(exact_tl)} run(s)** "
           f"({', '.join(f'{k} ×{v}' for k, v in exact_tl['solver'].value_counts().items())}), "
           f"on {exact_tl['instance'].nunique()} instance(s): a time limit is not a bug, but there "
           "the gap to the best bound is an upper bound on the true loss, not a proven figure.")),
        tables=[("", display_summary(summary))]))

    sections.append(Section(
        "Gap to the best bound by instance size",
        "Median (max) over the instances of each size.",
        tables=[("", gap_by_size(rows))],
        images=[("gap_vs_budget", "Gap to the best bound vs the fraction of dense MACs kept, per "
                 "solver (log scale; a gap of exactly 0 is a hollow marker on the line marked 0, a "
                 "decade below the smallest nonzero gap). Points are "
                 "instances, lines join medians."),
                ("time_vs_size", "Solve time vs instance size, per solver (log–log). Points are "
                 "runs, lines join medians; dashed: each time limit, over the sizes it "
                 "applied to.")]))

    if len(flagged_rows):
        sections.append(Section("Flagged runs", (
            f"> **{len(flagged_rows)} run(s) with a cross-check flag. Do not trust these rows; "
            "reproduce with `pruneopt crosscheck` on the instance.**"),
            tables=[("", flag_table(rows))]))

    sections.append(Section("Instances", "Best bound and who proved it, per instance.",
                            tables=[("", instances_table(rows))]))
    sections.append(Section("Versions", "", tables=[("", versions_table(rows, meta))],
                            after=("Files: `rows.csv` (one row per instance × solver, all "
                                   "fields), `report.md`, `index.html`, and the plots as PNG.")))
    return sections


# ----------------------------------------------------------------------------------- sweep part
NETWORKS_TEXT = (
    "Each method prunes the trained digits networks (scikit-learn's bundled digits; "
    "accuracy on its held-out split). FALCON, FALCON++, CHITA, WoodFisher and magnitude "
    "prune weights under a FLOP budget (`--flops`); AutoBot, FAIR-Pruner and the "
    "continuous relaxation remove whole channels (AutoBot aims at `--flops`, FAIR's "
    "budget is what its tolerance α gives, the relaxation's is set by its penalty). "
    "**budget**: `met` when the pruned network keeps at most the MACs asked (AutoBot: within "
    "its tolerance), **budget missed** (bold, with its MACs kept) when it keeps more — such a "
    "run is counted with the failures above; FAIR is asked no FLOP budget.")
FAIR_TIES_TEXT = (
    " FAIR's α is the tolerated overlap o(k)/k between the k least class-separating and the "
    "k most loss-sensitive channels of a group; o(k)/k moves in steps of 1/k, so two values of "
    "α between the same steps prune the same channels: here {ties}.")
FINETUNE_TEXT = (
    " **acc. fine-tuned**: the structured methods' shrunk network after training all its "
    "weights again (`finetune_epochs` of the study's [[networks]] block); the weight-pruning "
    "methods are not fine-tuned by a study (`n/a`).")
NO_FINETUNE_TEXT = (
    " Accuracy is before fine-tuning: no run of this study was fine-tuned (set "
    "`finetune_epochs` in a [[networks]] block to fine-tune the structured methods' shrunk "
    "networks).")


def networks_text(rows: pd.DataFrame) -> str:
    """The text of the networks section (says whether and what was fine-tuned)."""
    net = network_rows(rows)
    tuned = ("accuracy_finetuned" in net.columns
             and pd.to_numeric(net["accuracy_finetuned"], errors="coerce").notna().any())
    text = NETWORKS_TEXT + (FINETUNE_TEXT if tuned else NO_FINETUNE_TEXT)
    ties = fair_ties(net)
    return text + (FAIR_TIES_TEXT.format(ties="; ".join(ties)) if ties else "")


def fair_ties(net: pd.DataFrame) -> list[str]:
    """``"on MODEL, α = a and b prune the same channels"`` for FAIR runs of one model whose
    kept fractions are identical."""
    if not len(net) or "kept_fractions" not in net.columns:
        return []
    fair = net[(net["method"] == "fair") & net["kept_fractions"].notna()]
    out = []
    for (model, _), sub in fair.groupby(["model", "kept_fractions"], sort=False):
        if len(sub) > 1:
            alphas = " and ".join(fmt(a, "g") for a in sorted(
                pd.to_numeric(sub["tolerance"], errors="coerce")))
            out.append(f"on {model}, α = {alphas} prune the same channels")
    return out


NETWORKS_IMAGES = [
    ("accuracy_vs_macs", "Accuracy before fine-tuning vs fraction of MACs kept, per model and "
     "method; dashed: the dense model."),
    ("kept_fractions", "Per-layer kept fractions chosen by each method (weights for the "
     "unstructured methods, channels for the structured ones).")]
STRUCTURED_GAPS_TEXT = (
    "Each structured method's decision measured on its own scores and achieved "
    "MACs (see `pruneopt.models.method_gaps`): **G0** AutoBot's bisection against "
    "the best of all threshold cuts; **G1/F3/C2** the kept score against the exact "
    "channel-selection optimum (proved by the `exact` solver); **F4** FAIR's "
    "per-layer tolerance against one global tolerance; **G2/F5/C1** the calibration "
    "cross-entropy against the exact best prefix mask (enumerated); **C3** what "
    "thresholding the relaxation's gates changes. A positive gap is what the "
    "heuristic left on the table. A **skipped** measure says why: the enumeration of prefix "
    "masks grows as the product of the groups' sizes (the digits CNN needs 16,384 masks, about "
    "150 CPU-seconds a run), so a study computes it only up to its `max_combinations` "
    "(default 4,096); the row names the value that computes it.")


def study_sections(rows: pd.DataFrame, meta: dict) -> list[Section]:
    """The sections of the sweep part of the report."""
    sections = []
    inst = instance_rows(rows)
    if len(inst):
        forms = list(dict.fromkeys(inst["formulation"]))
        lines = [f"- **{f}** — {FORMULATION_TITLES.get(f, f)}: "
                 f"{inst[inst['formulation'] == f]['job_id'].nunique()} instances" for f in forms]
        verdict = outcome_callouts(inst, "solver runs of these instances")
        sections.append(Section(
            "Every formulation: exact against fast",
            "Generated instances of each formulation, every practical registered solver on "
            "each, cross-checked per instance (the gap to the best bound as above).\n\n"
            + "\n".join(lines) + "\n\n" + verdict,
            tables=[("", solver_summary(rows))],
            images=[("gap_vs_budget_all", "Gap to the best bound vs budget, per formulation "
                     "and solver (log scale; a gap of exactly 0 is a hollow marker on the "
                     "line marked 0)."),
                    ("seconds_vs_size_all", "Seconds vs instance size, per formulation and "
                     "solver (log–log); dashed: the time limit. Refused runs are not drawn.")]))
    miqp = network_miqp_table(rows)
    if len(miqp):
        sections.append(Section(
            "Whole networks: the joint MIQP against its certified bound",
            "FALCON's own objective Q (the local quadratic model, DESIGN §2a') on a whole "
            "trained network with the block-diagonal Fisher: each method's Q, its excess over "
            "the best Q found, and over the best certified lower bound (exact's, computed in "
            "float64 with rounding margins), both relative to that bound. When exact is not "
            "proven in its time limit, the last column is an upper bound on how far each "
            "method is from the optimum.", tables=[("", miqp)]))
    if len(network_rows(rows)):
        sections.append(Section("Pruning methods on networks", networks_text(rows),
                                tables=[("", network_table(rows))], images=NETWORKS_IMAGES))
        gt = gap_table(rows)
        if len(gt):
            sections.append(Section("Structured pruners against the exact optimum",
                                     STRUCTURED_GAPS_TEXT, tables=[("", gt)]))
    return sections


# ----------------------------------------------------------------------------------- the report
def report_sections(rows: pd.DataFrame, meta: dict, extra=None, every=None) -> list[Section]:
    """The whole report's content, shared by the Markdown and HTML renderers: the head line
    with the call-outs of every run (:func:`outcome_callouts` of ``every``, all rows of the
    report; default ``rows``), the runs that did not solve, the joint-ILP sections (when there
    are joint rows), then ``extra`` (the sweep part, :func:`study_sections`); the versions
    section stays last."""
    extra = list(extra or [])
    every = rows if every is None else every
    unsolved = unsolved_section(every)
    lead = [unsolved] if unsolved is not None else []
    callouts = outcome_callouts(every)
    if not len(rows):
        head = study_head(meta) + ("\n\n" + callouts if callouts else "")
        return [Section("", head), *lead, *extra,
                Section("Versions", "", tables=[("", versions_table(rows, meta))])]
    secs = joint_sections(rows, meta)
    secs[0].text += "\n\n" + callouts if callouts else ""
    return [secs[0], *lead, *secs[1:-1], *extra, secs[-1]]


def study_head(meta: dict) -> str:
    """The opening line of a report without joint rows."""
    return (f"Study **{meta.get('study', 'study')}**, seed {meta.get('seed', 0)}, wall time "
            f"{meta.get('wall_seconds', math.nan):.1f} s. Generated {meta.get('generated', '')} "
            f"on {meta.get('host', '')}.")


__all__ = ["FORMULATION_TITLES", "TITLE", "UNSOLVED_HEADING", "Section", "joint_sections",
           "outcome_callouts", "report_sections", "study_head", "study_sections",
           "unsolved_section"]
