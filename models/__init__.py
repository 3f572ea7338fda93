"""pruneopt.models — PyTorch networks, cost extraction, quadratic models, pruning pipelines.

The only subpackage that imports torch (the ``[torch]`` extra). The pipelines behind
``pruneopt prune``, ``channels`` and ``allocate`` are in :mod:`pruneopt.models.workflows`.
"""
