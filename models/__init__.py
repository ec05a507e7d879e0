"""AW-Net networks: a timm-style registry of static backbones and their AW-Net versions."""

from models.awnet import AWNet, AWNetOutput
from models.config import InputConfig
from models.introspect import is_awnet, unwrap
from models.layers import MIX_ADV, MIX_CLEAN, MIX_ROUTER, MixBatchNorm2d, WeightVariedConv2d
from models.registry import (
    create_model,
    default_input_config,
    is_awnet_name,
    list_models,
    model_info,
)

__all__ = [
    "AWNet",
    "AWNetOutput",
    "InputConfig",
    "MIX_ADV",
    "MIX_CLEAN",
    "MIX_ROUTER",
    "MixBatchNorm2d",
    "WeightVariedConv2d",
    "create_model",
    "default_input_config",
    "is_awnet",
    "is_awnet_name",
    "list_models",
    "model_info",
    "unwrap",
]
