"""The seeds' structured pruners on the digits networks, beside FALCON at the same MACs.

    python benchmarks/structured_methods.py [--json] [--models digits-cnn,digits-mlp]
                                            [--finetune-epochs 3] [--seed 0]

For each model: AutoBot and the continuous relaxation at 30/50/70 % of the MACs, FAIR-Pruner at
three tolerances α. Each run prints its MACs kept, accuracy before and after a short fine-tuning
of the shrunk model, its gap measures (``pruneopt.models.method_gaps``), and FALCON one-shot at
the MACs the method achieved (its masks then fine-tuned the same number of epochs). The
true-loss gaps are enumerated only where the prefix counts are few (the MLP; the CNN's 16,384
combinations are left out: ``--max-combinations`` raises the cap).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def falcon_at(model_name: str, keep: float, epochs: int, seed: int) -> dict:
    import numpy as np
    import torch

    from pruneopt.models.costs import prunable_layers
    from pruneopt.models.digits import evaluate_accuracy
    from pruneopt.models.finetune import fine_tune
    from pruneopt.models.pruning import PruneSettings
    from pruneopt.models.workflows.prune import run_prune

    settings = PruneSettings(method="falcon", keep_flops=keep, seed=seed)
    resolved, rec = run_prune(model_name, settings)
    out = {"falcon_macs_kept": rec["macs_kept"], "falcon_accuracy": rec["accuracy_after"]}
    if epochs:
        model = resolved.model
        layers = prunable_layers(model, torch.zeros((1, *resolved.input_shape)))
        masks = [(layer.weight.detach().numpy() != 0) for layer in layers]
        data = resolved.data
        fine_tune(model, layers, masks, data.X_train, data.y_train, epochs=epochs, seed=seed)
        out["falcon_accuracy_finetuned"] = evaluate_accuracy(model, data.X_eval, data.y_eval)
        assert all(np.all(layer.weight.detach().numpy()[~m] == 0)
                   for layer, m in zip(layers, masks))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--models", default="digits-cnn,digits-mlp")
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--max-combinations", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from pruneopt.models.workflows.structured import StructuredSettings, run_structured

    runs = [("autobot", f, None) for f in (0.3, 0.5, 0.7)]
    runs += [("relaxation", f, None) for f in (0.3, 0.5, 0.7)]
    runs += [("fair", None, a) for a in (0.005, 0.1, 0.3)]
    rows = []
    for model in args.models.split(","):
        for method, flops, alpha in runs:
            t0 = time.perf_counter()
            settings = StructuredSettings(method=method, keep_flops=flops, tolerance=alpha,
                                          seed=args.seed, finetune_epochs=args.finetune_epochs,
                                          max_combinations=args.max_combinations)
            _, _, _, rec = run_structured(model, settings)
            row = {"model": model, "method": method, "flops_asked": flops, "tolerance": alpha,
                   "macs_kept": rec["macs_kept"], "budgets_met": rec["budgets_met"],
                   "accuracy_dense": rec["accuracy_before"],
                   "accuracy": rec["accuracy_after"],
                   "accuracy_finetuned": rec["accuracy_finetuned"],
                   "method_seconds": rec["method_seconds"],
                   "gaps": {g["measure"]: (g["gap"] if "gap" in g else None)
                            for g in rec["gaps"]},
                   "seconds": time.perf_counter() - t0}
            row.update(falcon_at(model, round(rec["macs_kept"], 6), args.finetune_epochs,
                                 args.seed))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            asked = f"α={r['tolerance']}" if r["method"] == "fair" else f"F={r['flops_asked']}"
            gaps = " ".join(f"{k}={v:.3g}" for k, v in r["gaps"].items() if v is not None)
            print(f"{r['model']:<10} {r['method']:<10} {asked:<8} MACs {r['macs_kept']:.3f} "
                  f"acc {r['accuracy']:.3f}->{r['accuracy_finetuned']:.3f}  FALCON "
                  f"{r['falcon_accuracy']:.3f}->{r.get('falcon_accuracy_finetuned', 0):.3f}  "
                  f"{gaps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
