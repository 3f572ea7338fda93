"""``pruneopt prune``: prune a PyTorch model under a FLOP and an NNZ budget.

    pruneopt prune --model digits-mlp|digits-cnn|PATH|module:function --flops F [--nnz N]
                   --method falcon|falcon++|magnitude|chita|woodfisher [--out DIR] [--json]
    pruneopt prune --model M --method autobot|fair|relaxation [--flops F | --tolerance A]
                   [--finetune-epochs E] [--json]

Budgets are fractions kept, in (0, 1]. The structured pruners (AutoBot, FAIR-Pruner, the
continuous relaxation) remove whole channels and add ``gaps`` to the record: their decisions
measured against exact programs (:mod:`pruneopt.models.method_gaps`). With ``--json`` the record
is the only thing on stdout; progress goes to stderr.
"""

from __future__ import annotations

from pruneopt.cli_output import fmt, print_record
from pruneopt.cli_types import kept_fraction, positive_float, positive_int, unit_interval


def add_parser(sub) -> None:
    from pruneopt.models.defaults import ALL_METHODS, BASE_LEVEL, DEFAULT_CALIBRATION, STAGES

    p = sub.add_parser("prune", help="prune a PyTorch model under FLOP and NNZ budgets")
    p.add_argument("--model", required=True,
                   help="zoo name (digits-mlp, digits-cnn, resnet20, resnet56, mobilenetv1, "
                        "resnet50), a checkpoint path, or module:function")
    p.add_argument("--flops", type=kept_fraction, default=None,
                   help="fraction of MACs kept (required except for fair and relaxation)")
    p.add_argument("--tolerance", type=unit_interval, default=None,
                   help="FAIR-Pruner's tolerance of difference α in [0, 1] (default 0.005)")
    p.add_argument("--nnz", type=kept_fraction, default=1.0,
                   help="fraction of prunable weights kept (default 1: FLOP budget only)")
    p.add_argument("--method", choices=ALL_METHODS, default="falcon")
    p.add_argument("--out", metavar="DIR", help="write DIR/model.pt and DIR/record.json")
    p.add_argument("--json", action="store_true", help="print the record as JSON only")
    p.add_argument("--solver", default="falcon",
                   help="joint-ILP solver for the projection (falcon, exact, highs, ...)")
    p.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION,
                   help="number of calibration samples n (rows of the gradient matrix; "
                        "n x weights float64: use 4-16 on ImageNet-sized torchvision models)")
    p.add_argument("--l2", type=float, default=None, help="ridge l2 (λ = l2·n)")
    p.add_argument("--first-order", type=float, default=0.0,
                   help="weight of the first-order term (0 = off)")
    p.add_argument("--block-size", type=int, default=None,
                   help="block-diagonal Fisher with blocks of this many weights")
    p.add_argument("--max-iter", type=int, default=20)
    p.add_argument("--stage-max-iter", type=int, default=3,
                   help="FALCON++: iterations in each stage but the last (which uses --max-iter)")
    p.add_argument("--stages", type=int, default=STAGES, help="FALCON++ stages")
    p.add_argument("--base-level", type=float, default=BASE_LEVEL)
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="fine-tuning epochs between FALCON++ stages (gradual pruning), or "
                        "after a structured method")
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--input-shape", metavar="C,H,W")
    p.add_argument("--data", metavar="FILE.npz", help="your data: arrays X (N,C,H,W) and y (N,)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-gaps", action="store_true",
                   help="structured methods: skip the gap measures")
    p.add_argument("--gap-calibration", type=positive_int, default=256,
                   help="structured methods: samples for the true-loss gap enumeration")
    p.add_argument("--max-combinations", type=positive_int, default=None,
                   help="structured methods: largest prefix-count enumeration (default 4096)")
    p.add_argument("--time-limit", type=positive_float, default=60.0,
                   help="structured methods: seconds per exact solve of a gap measure")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prune)


def cmd_prune(args) -> int:
    from pruneopt.models.defaults import STRUCTURED_METHODS

    if args.out:  # before any work: a path that cannot be written is bad input
        from pruneopt.formulations.files import check_output_dir

        check_output_dir(args.out, "out")

    if args.method in STRUCTURED_METHODS:
        return _cmd_structured(args)
    if args.flops is None:
        raise ValueError(f"flops: --flops is required for {args.method}")
    if args.tolerance is not None:
        raise ValueError("tolerance: only FAIR-Pruner takes --tolerance")
    from pruneopt.models.defaults import DEFAULT_L2
    from pruneopt.models.pruning import PruneSettings
    from pruneopt.models.workflows.loading import parse_input_shape
    from pruneopt.models.workflows.prune import run_prune, save_prune

    settings = PruneSettings(
        method=args.method, keep_flops=args.flops, keep_nnz=args.nnz,
        l2=DEFAULT_L2 if args.l2 is None else args.l2, first_order=args.first_order,
        block_size=args.block_size, solver=args.solver, max_iter=args.max_iter,
        stage_max_iter=args.stage_max_iter,
        stages=args.stages, base_level=args.base_level, finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr, seed=args.seed)
    settings.validate()
    resolved, record = run_prune(args.model, settings,
                                 input_shape=parse_input_shape(args.input_shape),
                                 n_calibration=args.calibration, data_file=args.data,
                                 progress=not args.no_progress)
    if args.out:
        record["files"] = save_prune(resolved, record, args.out)
    print_record(record, args.json, lambda r: [
        f"{r['method']} on {r['model']}: MACs {r['macs_after']:,}/{r['macs_dense']:,} "
        f"({r['macs_kept']:.3f} kept, asked {r['flops_asked']}), NNZ {r['nnz_after']:,}/"
        f"{r['nnz_dense']:,} ({r['nnz_kept']:.3f}, asked {r['nnz_asked']}), accuracy "
        f"{r['accuracy_before']:.4f} -> {r['accuracy_after']:.4f} ({r['data']} data), "
        f"{r['seconds']:.1f}s"])
    return 0


def _cmd_structured(args) -> int:
    from pruneopt.models.workflows.loading import parse_input_shape
    from pruneopt.models.workflows.structured import (
        StructuredSettings,
        run_structured,
        save_structured,
    )

    if args.nnz != 1.0:
        raise ValueError(f"nnz: {args.method} removes whole channels and takes no NNZ budget")
    settings = StructuredSettings(
        method=args.method, keep_flops=args.flops, tolerance=args.tolerance, seed=args.seed,
        finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
        gaps=not args.no_gaps, gap_calibration=args.gap_calibration,
        max_combinations=args.max_combinations, time_limit=args.time_limit)
    settings.validate()
    _, pruned, decision, record = run_structured(
        args.model, settings, input_shape=parse_input_shape(args.input_shape),
        data_file=args.data, progress=not args.no_progress)
    if args.out:
        record["files"] = save_structured(pruned, decision, record, args.out)
    print_record(record, args.json, _describe_structured)
    return 0


def _describe_structured(r: dict) -> list[str]:
    asked = f"tolerance {r['tolerance']}" if r["method"] == "fair" else f"asked {r['flops_asked']}"
    ft = (f", fine-tuned {r['accuracy_finetuned']:.4f}"
          if r["accuracy_finetuned"] is not None else "")
    lines = [f"{r['method']} on {r['model']}: MACs {r['macs_after']:,}/{r['macs_dense']:,} "
             f"({r['macs_kept']:.3f} kept, {asked}), NNZ {r['nnz_after']:,}/{r['nnz_dense']:,}, "
             f"accuracy {r['accuracy_before']:.4f} -> {r['accuracy_after']:.4f}{ft} "
             f"({r['data']} data), {r['seconds']:.1f}s"]
    for row in r["gaps"]:
        if "skipped" in row:
            lines.append(f"  {row['measure']:<9} skipped: {row['skipped']}")
        else:
            lines.append(f"  {row['measure']:<9} method {fmt(row['method_value'], '.6g')}  "
                         f"exact {fmt(row['exact_value'], '.6g')}  gap {fmt(row['gap'], '.3g')}"
                         f"  ({row['description']})")
    return lines
