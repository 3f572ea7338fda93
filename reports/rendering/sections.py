"""The report's content as :class:`Section`\\ s, shared by the Markdown and the HTML renderer
(:mod:`~pruneopt.reports.rendering.markdown`, :mod:`~pruneopt.reports.rendering.html`).

:func:`report_sections` is the whole report: :func:`joint_sections` of the joint-ILP study's rows
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

from pruneopt.reports.rendering.formatting import instance_rows, network_rows
from pruneopt.reports.rendering.plots import GAP_FLOOR
from pruneopt.reports.rendering.tables import (
    display_summary,
    flag_table,
    flagged,
    gap_by_size,
    gap_table,
    instances_table,
    network_miqp_table,
    network_table,
    solver_summary,
    summarize,
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
    if len(flagged_rows):
        verdict_txt = (f"> **CROSS-CHECK FAILED: {len(flagged_rows)} of {len(rows)} solver runs carry a "
                       f"non-'ok' verdict ({', '.join(sorted(set(flagged_rows['solver'])))}). Each one "
                       f"is a bug in a formulation or a solver, or a run that returned nothing; "
                       f"see the section \"Flagged runs\" below.**")
    else:
        verdict_txt = (f"> All {len(rows)} solver runs passed the cross-check (verdict `ok`): no "
                       f"proven optimum beaten, no bound below a feasible objective, no infeasible "
                       f"selection, no two proven optima that differ.")
    sections.append(Section("", head + "\n\n" + verdict_txt))

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
        "— any of them is a bug.")))

    sections.append(Section("Summary per solver", (
        "solved = runs that returned a feasible selection; proven optimal = bound meets the "
        "objective within 1e-9 (only exact solvers can); gaps are over solved runs."
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
                 f"solver (log scale; zero gaps are drawn at {GAP_FLOOR:g}). Points are "
                 "instances, lines join medians."),
                ("time_vs_size", "Solve time vs instance size, per solver (log–log). Points are "
                 "runs, lines join medians; dashed: the time limit.")]))

    if len(flagged_rows):
        sections.append(Section("Flagged runs", (
            f"> **{len(flagged_rows)} run(s) with a non-'ok' verdict. Do not trust these rows; "
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
    "Accuracy is before fine-tuning unless the column says otherwise.")
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
    "heuristic left on the table.")


def study_sections(rows: pd.DataFrame, meta: dict) -> list[Section]:
    """The sections of the sweep part of the report."""
    sections = []
    inst = instance_rows(rows)
    if len(inst):
        forms = list(dict.fromkeys(inst["formulation"]))
        flags = flagged(inst)
        lines = [f"- **{f}** — {FORMULATION_TITLES.get(f, f)}: "
                 f"{inst[inst['formulation'] == f]['job_id'].nunique()} instances" for f in forms]
        verdict = ("> All solver runs of these instances passed the cross-check."
                   if flags.empty else
                   f"> **{len(flags)} run(s) carry a non-'ok' verdict: "
                   f"{', '.join(sorted(set(flags['solver'].astype(str))))}.**")
        sections.append(Section(
            "Every formulation: exact against fast",
            "Generated instances of each formulation, every practical registered solver on "
            "each, cross-checked per instance (the gap to the best bound as above).\n\n"
            + "\n".join(lines) + "\n\n" + verdict,
            tables=[("", solver_summary(rows))],
            images=[("gap_vs_budget_all", "Gap to the best bound vs budget, per formulation "
                     "and solver (log scale; zero drawn at the floor)."),
                    ("seconds_vs_size_all", "Seconds vs instance size, per formulation and "
                     "solver (log–log).")]))
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
        sections.append(Section("Pruning methods on networks", NETWORKS_TEXT,
                                tables=[("", network_table(rows))], images=NETWORKS_IMAGES))
        gt = gap_table(rows)
        if len(gt):
            sections.append(Section("Structured pruners against the exact optimum",
                                     STRUCTURED_GAPS_TEXT, tables=[("", gt)]))
    return sections


# ----------------------------------------------------------------------------------- the report
def report_sections(rows: pd.DataFrame, meta: dict, extra=None) -> list[Section]:
    """The whole report's content, shared by the Markdown and HTML renderers: the joint-ILP
    sections (when there are joint rows) followed by ``extra`` (the sweep part,
    :func:`study_sections`); the versions section stays last."""
    extra = list(extra or [])
    if not len(rows):
        return [Section("", study_head(meta)), *extra,
                Section("Versions", "", tables=[("", versions_table(rows, meta))])]
    secs = joint_sections(rows, meta)
    return [*secs[:-1], *extra, secs[-1]]


def study_head(meta: dict) -> str:
    """The opening line of a report without joint rows."""
    return (f"Study **{meta.get('study', 'study')}**, seed {meta.get('seed', 0)}, wall time "
            f"{meta.get('wall_seconds', math.nan):.1f} s. Generated {meta.get('generated', '')} "
            f"on {meta.get('host', '')}.")


__all__ = ["FORMULATION_TITLES", "TITLE", "Section", "joint_sections", "report_sections",
           "study_head", "study_sections"]
