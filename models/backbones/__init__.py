"""Backbones, each written once against conv/norm factories (static or AW-Net)."""

from models.backbones.base import Backbone
from models.backbones.resnet import ResNet, resnet18
from models.backbones.small_cnn import SmallCNN
from models.backbones.wideresnet import WideResNet

__all__ = ["Backbone", "ResNet", "SmallCNN", "WideResNet", "resnet18"]
