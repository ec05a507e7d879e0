"""What a model is, asked in one place: the bare module behind wrappers, and whether it is an AW-Net.

Every caller that needs to know uses these two functions, never an attribute probe (no
``is_awnet`` flag or ``mix_mode`` lookup on the model); names of registered models are
asked with :func:`models.registry.is_awnet_name`.
"""

from __future__ import annotations

from torch import nn

from models.awnet import AWNet


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model behind any stack of wrappers.

    Strips ``torch.compile``'s ``OptimizedModule`` (the model is its ``_orig_mod``) and
    DistributedDataParallel / DataParallel (or any wrapper that holds the model as its
    ``module`` submodule), in any order and nesting. A model that is not wrapped is
    returned as it is. Wrappers that hold the model under another name (e.g. the static
    export views, ``.model``) are models of their own and are not stripped.
    """
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module) or inner is model:
            return model
        model = inner


def is_awnet(model: nn.Module) -> bool:
    """True when ``model`` is, behind its wrappers (:func:`unwrap`), an :class:`AWNet`."""
    return isinstance(unwrap(model), AWNet)
