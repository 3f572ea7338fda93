"""``pruneopt channels``: structured channel pruning of a PyTorch model under a FLOP budget.

    pruneopt channels --model MODEL --flops F --solver NAME [--score l1|l2|bn|taylor]
                      [--json] [--out DIR] [--input-shape C,H,W] [--time-limit S] [--seed S]
                      [--export-tp-plan FILE.json] [--tp-check]

MODEL is resolved as for ``pruneopt prune`` (zoo name, checkpoint, or module:function with
--input-shape; ``torchvision.models:NAME`` defaults to 3,224,224 and random weights). The
pipeline is :mod:`pruneopt.models.workflows.channels`: the channel groups and their bilinear MAC
model come from the network's graph; the channel-selection problem (DESIGN §2c) keeps at most
F·(dense MACs) and is solved by any solver registered for the
"channels" formulation (exact, fast, dp, pyomo-highs, cpsat, uniform, global-threshold, ...);
the model is then shrunk physically and its MACs are recounted with ``FlopCounterMode`` on the
shrunk model, which must equal the problem's prediction exactly.

Accuracy: the digits models on the digits test split; other models on synthetic inputs labelled
by the dense model (so "accuracy" is agreement with the dense model, 1.0 before pruning).

``--out DIR`` writes ``model.pt`` (the whole shrunk module, ``torch.save(model)``: its
architecture changed, so a state_dict alone would not rebuild it; load it with
``torch.load(path, weights_only=False)`` — or ``pruneopt ... --model DIR/model.pt
--input-shape C,H,W`` — where pruneopt is importable), ``record.json``, ``problem.npz`` (the
instance, for ``pruneopt solve``) and ``selection.npz`` (x and the counts).

``--export-tp-plan FILE.json`` writes the selection as a Torch-Pruning pruning plan (per group
that loses channels: its root module and the root's output channels to remove), which
``tp.DependencyGraph`` applies where pruneopt's shrinker cannot; ``--tp-check`` (the [tp] extra)
adds ``torch_pruning`` to the record: DepGraph's groups against pruneopt's, and the MACs of the
dense model pruned by DepGraph with that plan against pruneopt's prediction.

With ``--json`` the record is the only thing on stdout.
"""

from __future__ import annotations

from pruneopt.cli_output import fmt, print_record
from pruneopt.cli_types import kept_fraction, positive_float, positive_int
from pruneopt.models.defaults import CHANNEL_CALIBRATION, CHANNEL_SCORES, SYNTHETIC_EVAL


def add_parser(sub) -> None:
    p = sub.add_parser("channels", help="structured channel pruning under a FLOP budget")
    p.add_argument("--model", required=True,
                   help="zoo name (digits-mlp, digits-cnn, resnet20, resnet56, mobilenetv1, "
                        "resnet50), a checkpoint path, or module:function")
    p.add_argument("--flops", type=kept_fraction, required=True, help="fraction of MACs kept")
    p.add_argument("--solver", required=True,
                   help="a solver of the channels formulation (exact, fast, dp, pyomo-highs, "
                        "cpsat, uniform, global-threshold, ...)")
    p.add_argument("--score", choices=CHANNEL_SCORES, default="l1",
                   help="channel importance (default l1)")
    p.add_argument("--json", action="store_true", help="print the record as JSON only")
    p.add_argument("--out", metavar="DIR",
                   help="write DIR/model.pt, record.json, problem.npz, selection.npz")
    p.add_argument("--input-shape", metavar="C,H,W",
                   help="required with module:function (torchvision.models:NAME: 3,224,224)")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="S")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-keep", type=positive_int, default=1,
                   help="channels every prunable group keeps at least (default 1)")
    p.add_argument("--calibration", type=positive_int, default=CHANNEL_CALIBRATION,
                   help="inputs for taylor scores")
    p.add_argument("--eval-samples", type=positive_int, default=SYNTHETIC_EVAL,
                   help="synthetic evaluation inputs (models without a data set)")
    p.add_argument("--data", metavar="FILE.npz", help="your data: arrays X (N,C,H,W) and y (N,)")
    p.add_argument("--export-tp-plan", metavar="FILE.json",
                   help="write the selection as a Torch-Pruning pruning plan")
    p.add_argument("--tp-check", action="store_true",
                   help="cross-check the groups and the plan with Torch-Pruning's "
                        "DependencyGraph ([tp] extra)")
    p.set_defaults(func=cmd_channels)


def cmd_channels(args) -> int:
    if args.out:  # before any work: a path that cannot be written is bad input
        from pruneopt.formulations.files import check_output_dir

        check_output_dir(args.out, "out")
    if args.export_tp_plan:
        from pruneopt.formulations.files import check_output_file

        check_output_file(args.export_tp_plan, "export_tp_plan")
    from pruneopt.models.workflows.channels import (
        ChannelSettings,
        run_channels,
        save_channels,
        tp_plan,
    )
    from pruneopt.models.workflows.loading import parse_input_shape

    settings = ChannelSettings(
        keep_flops=args.flops, solver=args.solver, score=args.score, min_keep=args.min_keep,
        calibration=args.calibration, eval_samples=args.eval_samples,
        time_limit=args.time_limit, seed=args.seed, tp_check=args.tp_check)
    settings.validate()  # an unknown solver fails before any work
    run = run_channels(args.model, settings, input_shape=parse_input_shape(args.input_shape),
                       data_file=args.data)
    if args.out:
        save_channels(run, args.out)
    if args.export_tp_plan:
        import json

        from pruneopt.formulations.files import atomic_write

        atomic_write(args.export_tp_plan, json.dumps(tp_plan(run), indent=1) + "\n")
    print_record(run.record, args.json, lambda r: [
        f"{r['solver']} on {r['model']} ({r['score']} scores): "
        f"{r['status']}{' (proven)' if r['proven_optimal'] else ''}, objective "
        f"{fmt(r['objective'], '.6g')}, gap {fmt(r['gap'], '.3g')}; "
        f"MACs {r['macs_measured']:,}/{r['macs_before']:,} "
        f"({r['macs_kept']:.3f} kept, asked {r['flops_asked']}), channels "
        f"{r['channels_after']}/{r['channels_before']}, accuracy "
        f"{r['accuracy_before']:.4f} -> {r['accuracy_after']:.4f} "
        f"({r['data']} data), {r['seconds']:.1f}s"] + tp_lines(r))
    return 0


def tp_lines(record: dict) -> list[str]:
    """The Torch-Pruning cross-check in one or two lines (nothing without --tp-check)."""
    tp = record.get("torch_pruning")
    if not tp:
        return []
    g = tp.get("groups")
    if g is None:
        lines = [f"Torch-Pruning could not list its groups: {tp['groups_error']}"]
    else:
        lines = [f"Torch-Pruning: {g['tp_prunable_in_pruneopt']}/{g['tp_groups']} of DepGraph's "
                 f"groups prunable here ({g['pruneopt_prunable']} prunable groups in pruneopt)"]
    if tp["plan_applied"]:
        lines.append(f"Torch-Pruning applied the plan: {tp['plan_macs']:,} MACs "
                     f"({'equal to' if tp['plan_macs_equal'] else 'NOT equal to'} pruneopt's "
                     f"{record['macs_predicted']:,})")
    else:
        lines.append(f"Torch-Pruning could not apply the plan: {tp['plan_error']}")
    return lines
