"""A compact 3D ResNet for candidate patches (one input channel, one logit out).

GroupNorm instead of BatchNorm: batch statistics differ between hospitals and are
not parameters FedAvg can average, and BatchNorm rules out per-sample DP-SGD later.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from fate_components.core.errors import ConfigError, reject_unknown_options

__all__ = ["ModelConfig", "ResNet3D", "build_model", "count_parameters"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the classifier; every site must use an identical one."""

    widths: tuple[int, ...] = (16, 32, 64)   # channels per stage; each stage after the first halves the resolution
    blocks: tuple[int, ...] = (1, 1, 1)      # residual blocks per stage
    groups: int = 8                          # GroupNorm groups (must divide every width)
    dropout: float = 0.2
    stem_stride: int = 2                     # 2 halves the resolution before stage 1: ~6x cheaper on a CPU

    def __post_init__(self) -> None:
        widths, blocks = tuple(int(w) for w in self.widths), tuple(int(b) for b in self.blocks)
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "blocks", blocks)
        if len(widths) != len(blocks) or not widths:
            raise ConfigError(f"model widths {widths} and blocks {blocks} must be non-empty and of equal length")
        if any(w <= 0 or w % self.groups for w in widths):
            raise ConfigError(f"every model width must be a positive multiple of groups={self.groups}, not {widths}")
        if any(b < 1 for b in blocks):
            raise ConfigError(f"every stage needs at least one block, not {blocks}")
        if self.stem_stride not in (1, 2):
            raise ConfigError(f"stem_stride must be 1 or 2, not {self.stem_stride}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        reject_unknown_options(d, cls, "model")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class _BasicBlock3D(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv3d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.act = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv3d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.GroupNorm(groups, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class ResNet3D(nn.Module):
    """Input [N, 1, D, H, W] normalised patches; output [N] logits (nodule vs not).

    Any cube edge (the tests use 16 to 64 voxels, every patch preset among them): the global average pool
    makes the parameters independent of the patch size, so the model signature cannot tell the
    presets apart; the pre-round check compares the sites' patch settings for that.
    """

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        w0 = config.widths[0]
        self.stem = nn.Sequential(nn.Conv3d(1, w0, 3, stride=config.stem_stride, padding=1, bias=False),
                                  nn.GroupNorm(config.groups, w0), nn.ReLU())
        layers, in_ch = [], w0
        for i, (width, n_blocks) in enumerate(zip(config.widths, config.blocks)):
            stride = 1 if i == 0 else 2
            stage = [_BasicBlock3D(in_ch, width, stride, config.groups)]
            stage += [_BasicBlock3D(width, width, 1, config.groups) for _ in range(n_blocks - 1)]
            layers.append(nn.Sequential(*stage))
            in_ch = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(in_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        x = self.pool(x).flatten(1)
        return self.head(self.dropout(x)).squeeze(1)


def build_model(config: ModelConfig | dict | None = None, *, seed: int | None = None) -> ResNet3D:
    """Build the classifier; the same seed gives the same initial weights at every site."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    if seed is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return ResNet3D(config or ModelConfig())
    return ResNet3D(config or ModelConfig())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
