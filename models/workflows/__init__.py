"""The pruning pipelines, end to end: one module per command, the steps they share beside them.

    loading.py     --model (zoo name, checkpoint, module:function) → ResolvedModel; --data /
                   digits / synthetic data → Dataset; calibration batches
    common.py      progress bar, nonzero count, shrink + FlopCounterMode, the pruned-model
                   record's common keys
    records.py     the one writer of --out DIR: model.pt, side files, record.json (atomic,
                   strict JSON)
    prune.py       ``pruneopt prune`` with FALCON, FALCON++, magnitude, CHITA, WoodFisher
    structured.py  ``pruneopt prune`` with AutoBot, FAIR-Pruner, the continuous relaxation
    channels.py    ``pruneopt channels``: exact channel selection, physical shrinking
    allocate.py    ``pruneopt allocate``: per-layer budgets from a loss table or a model

Each pipeline returns the pruned model and a JSON-ready record; its ``save_*`` writes them
through :mod:`.records`. The command line (:mod:`pruneopt.cli`) parses flags into a pipeline's
settings, calls it and prints; the study runners of :mod:`pruneopt.reports` call the same
functions. Importing this package imports nothing (``allocate`` and ``records`` run without
torch; the other modules import it).
"""
