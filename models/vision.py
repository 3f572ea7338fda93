"""torchvision's classification architectures on the CPU build of torch (the ``[zoo]`` extra).

**Why a loader.** PyPI's torchvision wheels are CUDA builds. Next to the pinned CPU torch
(2.13.0+cpu), torchvision 0.28.0 installs (its only torch requirement, ``torch==2.13.0``, is met by
the local version ``2.13.0+cpu``) but ``import torchvision`` fails: its compiled ops library
``_C.so`` links CUDA libraries that are not there, so the ops (``nms``, ``roi_align``, ...) are
never registered, and ``_meta_registrations.py`` then calls ``torch.library.register_fake(
"torchvision::nms")`` unconditionally, which raises ``RuntimeError: operator torchvision::nms
does not exist``. Every other registration there is guarded by ``extension._has_ops()``.

:func:`import_torchvision` imports torchvision normally; only when that fails with exactly that
error does it remove the half-imported modules, *define the schemas* of the two unguarded ops
(``torchvision::nms`` and ``torchvision::qnms``, without kernels) in a ``torch.library`` fragment,
and import again. The classification architectures are pure Python and run; detection ops that
need the compiled kernels (``torchvision.ops.nms`` …) still raise torchvision's own "Couldn't load
custom C++ ops". With a torchvision whose ops load (a matching CPU build), nothing is defined and
the shim is inert.

:func:`torchvision_model` builds a classification network by name on random weights (nothing is
downloaded: ``weights=None``), sized for small inputs where an architecture needs it (ViT's
``image_size``). ``module:function`` specs that name ``torchvision...`` go through the loader too
(see :func:`pruneopt.models.workflow.resolve_model`).
"""

from __future__ import annotations

import sys

import torch
from torch import nn

# The ops that torchvision registers a fake kernel for without checking that its library loaded.
_UNGUARDED_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARIES: list = []  # keep the torch.library fragment alive for the process

# The classification architectures the benchmark and tests use, with their default input shape.
DEFAULT_INPUT_SHAPE = (3, 64, 64)
TORCHVISION_MODELS = (
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "densenet121", "squeezenet1_0", "vgg11_bn",
    "regnet_x_400mf", "convnext_tiny", "vit_b_16", "googlenet", "resnext50_32x4d",
)


def _op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def import_torchvision():
    """``import torchvision`` that also works with a CUDA wheel next to the CPU torch (module
    docstring). Raises ``ValueError("model: ...")`` when torchvision is not installed."""
    mod = sys.modules.get("torchvision")
    if mod is not None and hasattr(mod, "models"):
        return mod
    try:
        import torchvision
        return torchvision
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision":
            raise
        raise ValueError("model: torchvision is not installed; install pruneopt with the [zoo] "
                         "extra (make test does)") from None
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[key]
    missing = [s for op, s in _UNGUARDED_SCHEMAS.items() if not _op_exists(op)]
    if missing:
        lib = torch.library.Library("torchvision", "FRAGMENT")  # noqa: TOR901
        for schema in missing:
            lib.define(schema)
        _LIBRARIES.append(lib)
    import torchvision

    return torchvision


def torchvision_model(name: str, *, num_classes: int = 1000, seed: int = 0,
                      input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
                      **kwargs) -> nn.Module:
    """A torchvision classification network by name, on random weights (seeded), in eval mode.

    ViTs get ``image_size = input_shape[1]``; GoogLeNet and Inception are built without their
    auxiliary heads. Extra keyword arguments go to the torchvision builder."""
    tv = import_torchvision()
    builder = getattr(tv.models, name, None)
    if builder is None or not callable(builder) or name.startswith("_"):
        raise ValueError(f"model: torchvision.models has no architecture {name!r}")
    kw = dict(weights=None, num_classes=num_classes)
    if name.startswith("vit_"):
        kw["image_size"] = int(input_shape[1])
    if name in ("googlenet", "inception_v3"):
        kw.update(aux_logits=False, init_weights=True)
    kw.update(kwargs)
    torch.manual_seed(seed)
    try:
        model = builder(**kw)
    except Exception as exc:  # a builder that rejects the arguments
        raise ValueError(f"model: torchvision.models.{name}: {exc}") from None
    return model.eval()


def vit_tiny(image_size: int = 32, patch_size: int = 8, num_layers: int = 2, num_heads: int = 2,
             hidden_dim: int = 32, mlp_dim: int = 64, num_classes: int = 10) -> nn.Module:
    """A small VisionTransformer from torchvision's class (for tests)."""
    tv = import_torchvision()
    from torchvision.models.vision_transformer import VisionTransformer

    del tv
    return VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=num_layers,
                             num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim,
                             num_classes=num_classes).eval()


__all__ = ["DEFAULT_INPUT_SHAPE", "TORCHVISION_MODELS", "import_torchvision",
           "torchvision_model", "vit_tiny"]
