"""Names and defaults of the pruning pipelines, importable without torch (the CLI parser uses them)."""

METHODS = ("falcon", "falcon++", "magnitude", "chita", "woodfisher")
STRUCTURED_METHODS = ("autobot", "fair", "relaxation")  # channel pruners (issue 6)
ALL_METHODS = METHODS + STRUCTURED_METHODS
STAGES = 20  # FALCON++ stages in the released scripts
BASE_LEVEL = 0.2  # fraction removed at the first stage (ResNet-20 scripts; 0.3 on ImageNet)
DEFAULT_L2 = 1e-3  # ridge l2, the middle of the released scripts' grid {1e-4, 1e-3, 1e-2}
DEFAULT_CALIBRATION = 128  # calibration samples n
DEFAULT_TOLERANCE = 0.005  # FAIR-Pruner's tolerance of difference α (its code's default)
CHANNEL_SCORES = ("l1", "l2", "bn", "taylor")  # channel importance of ``pruneopt channels``
CHANNEL_CALIBRATION = 64  # ``pruneopt channels``: inputs for taylor scores
SYNTHETIC_EVAL = 512  # evaluation inputs of models without a data set
