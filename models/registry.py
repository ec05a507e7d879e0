"""One registry of model names (timm style): ``create_model(name, **kw)``, ``list_models()``.

Every backbone is registered twice: plain (static weights, one BN) and as AW-Net
(``awnet_`` prefix: weight-varied convs, MixBN and the adversarial router).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from models.awnet import AWNet
from models.backbones import ResNet, SmallCNN, WideResNet
from models.backbones.base import Backbone
from models.config import InputConfig, cifar10_config, digits_config
from models.layers import AWNET, PLAIN, LayerFactories

AWNET_PREFIX = "awnet_"
ROUTER_KWARGS = ("router_width", "router_hidden", "signal_activation")


@dataclass(frozen=True)
class BackboneSpec:
    build: Callable[..., Backbone]
    default_input: Callable[[], InputConfig]
    description: str
    paper: str


def _wrn(depths: Sequence[int], widths: Sequence[int]) -> Callable[..., Backbone]:
    def build(input_config: InputConfig, layers: LayerFactories, **kw: Any) -> Backbone:
        kw.setdefault("depths", depths)
        kw.setdefault("widths", widths)
        return WideResNet(input_config, layers, **kw)

    return build


_BACKBONES: dict[str, BackboneSpec] = {
    "smallcnn": BackboneSpec(
        lambda ic, layers, **kw: SmallCNN(ic, layers, **kw),
        digits_config,
        "small CNN for 28x28 grey images (4 convs, 2 pools, fc 128)",
        "this project (TRADES-style SmallCNN with BN)",
    ),
    "smallcnn_w16": BackboneSpec(
        lambda ic, layers, **kw: SmallCNN(ic, layers, **{"width": 16, "hidden": 64, **kw}),
        digits_config,
        "small CNN at half width (16-16-32-32, fc 64): the capacity axis of the trade-off sweep",
        "this project",
    ),
    "smallcnn_w8": BackboneSpec(
        lambda ic, layers, **kw: SmallCNN(ic, layers, **{"width": 8, "hidden": 32, **kw}),
        digits_config,
        "small CNN at quarter width (8-8-16-16, fc 32): where robustness costs clean accuracy",
        "this project",
    ),
    "smallcnn_w4": BackboneSpec(
        lambda ic, layers, **kw: SmallCNN(ic, layers, **{"width": 4, "hidden": 16, **kw}),
        digits_config,
        "small CNN at eighth width (4-4-8-8, fc 16): the narrowest point of the trade-off sweep",
        "this project",
    ),
    "resnet18": BackboneSpec(
        lambda ic, layers, **kw: ResNet(ic, layers, blocks=(2, 2, 2, 2), **kw),
        cifar10_config,
        "ResNet-18, CIFAR form (3x3 stem, no max-pool)",
        "He et al., CVPR 2016",
    ),
    "wrn34_10": BackboneSpec(
        _wrn((5, 5, 5), (10, 10, 10)), cifar10_config,
        "WRN-34-10: depths 5-5-5, widths 10-10-10 (46M params)",
        "Zagoruyko & Komodakis, BMVC 2016",
    ),
    "wrn34_12": BackboneSpec(
        _wrn((5, 5, 5), (12, 12, 12)), cifar10_config,
        "WRN-34-12: the equal-budget baseline of WRN-34-R (66.5M params)",
        "Huang et al., NeurIPS 2021",
    ),
    "wrn34_r": BackboneSpec(
        _wrn((5, 5, 5), (20, 20, 8)), cifar10_config,
        "WRN-34-R: depths 5-5-5, widths 20-20-8, reduced last stage (68.1M params)",
        "Huang et al., NeurIPS 2021 (RobustWRN)",
    ),
    "wrn": BackboneSpec(
        _wrn((5, 5, 5), (10, 10, 10)), cifar10_config,
        "WideResNet with per-stage depths=(D1,D2,D3) and widths=(W1,W2,W3) keyword arguments",
        "Huang et al., NeurIPS 2021",
    ),
}


def list_models(pattern: str | None = None) -> list[str]:
    """All registered names (plain and ``awnet_``), optionally filtered by a substring."""
    names = sorted([*_BACKBONES, *(AWNET_PREFIX + n for n in _BACKBONES)])
    return [n for n in names if pattern is None or pattern in n]


def backbone_name(name: str) -> str:
    return name[len(AWNET_PREFIX):] if is_awnet_name(name) else name


def is_awnet_name(name: str) -> bool:
    return name.startswith(AWNET_PREFIX)


def model_info(name: str) -> BackboneSpec:
    try:
        return _BACKBONES[backbone_name(name)]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(list_models())}") from None


def default_input_config(name: str) -> InputConfig:
    return model_info(name).default_input()


def create_model(
    name: str,
    input_config: InputConfig | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    The input configuration defaults to the backbone's (digits for ``smallcnn``, CIFAR-10
    for the others) and any field can be overridden. Router options
    (``router_width``, ``router_hidden``, ``signal_activation``) apply to ``awnet_`` names;
    other keyword arguments go to the backbone (e.g. ``depths``/``widths`` for ``wrn``).
    """
    spec = model_info(name)
    ic = input_config or spec.default_input()
    if class_names is not None:
        ic = ic.replace(class_names=tuple(class_names))
    elif num_classes is not None and num_classes != ic.num_classes:
        ic = ic.replace(class_names=tuple(str(i) for i in range(num_classes)))
    if channels is not None and channels != ic.channels:
        ic = ic.replace(channels=channels, mean=(0.0,) * channels, std=(1.0,) * channels)
    if size is not None:
        ic = ic.replace(size=tuple(size))
    if mean is not None:
        ic = ic.replace(mean=tuple(mean))
    if std is not None:
        ic = ic.replace(std=tuple(std))
    ic = InputConfig.from_dict(ic.to_dict())  # re-validate
    router_kw = {k: kwargs.pop(k) for k in ROUTER_KWARGS if k in kwargs}
    if is_awnet_name(name):
        model: nn.Module = AWNet(spec.build(ic, AWNET, **kwargs), **router_kw)
    else:
        if router_kw:
            raise TypeError(f"{sorted(router_kw)} only apply to awnet_ models")
        model = spec.build(ic, PLAIN, **kwargs)
    model.model_name = name  # type: ignore[assignment]
    return model
