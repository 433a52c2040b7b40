"""ResNets: the CIFAR family (ResNet-20, -56, any 6n+2) and the ImageNet family (18 to 152).

Every convolution, the stem, every 3x3 and 1x1 conv in the blocks and the 1x1
projection shortcuts, is built by :func:`hybridconv.nn.conv_layer` from its
resolved kernel source, so ``kernels={'*': 'hybrid'}`` really makes every
layer hybrid. Conv layer names: ``conv1`` (stem), then
``stage{s}_block{b}_conv{i}`` and ``stage{s}_block{b}_shortcut`` (1-based, in
forward order); the block modules are attributes ``stage{s}_block{b}``, so a
layer's name is its attribute path joined by '_'.

BatchNorm follows PyTorch: momentum 0.9 (Flax's convention; PyTorch writes
0.1), epsilon 1e-5, scale initialised to one in every block (no zero-init of
the last BN of a block, torchvision's default). Convs have no bias (each is
followed by BatchNorm); padding is ``kernel_size // 2`` on each side as in
torchvision, so strided layers align with PyTorch's.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from hybridconv.models.layer_specs import resolve_sources
from hybridconv.nn import conv_layer, max_pool, sources
from hybridconv.nn.layer_rngs import layer_rngs

BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("projection", "pad")


@dataclasses.dataclass(frozen=True)
class _BlockPlan:
  """Where one residual block sits and its shapes."""

  name: str  # e.g. 'stage2_block1'
  in_channels: int
  channels: int  # the block's inner width; output is channels * expansion
  stride: int
  projection: bool  # a 1x1 conv + BN shortcut

  def conv_names(self, block: str) -> tuple[str, ...]:
    convs = ("conv1", "conv2", "conv3") if block == "bottleneck" else ("conv1", "conv2")
    names = tuple(f"{self.name}_{conv}" for conv in convs)
    return names + ((f"{self.name}_shortcut",) if self.projection else ())


def _plan(
  stage_sizes: tuple[int, ...],
  stage_channels: tuple[int, ...],
  stem_channels: int,
  expansion: int,
  shortcut: str,
) -> tuple[_BlockPlan, ...]:
  """Blocks of every stage; the first block of stages 2+ halves the resolution."""
  plans, in_channels = [], stem_channels
  for s, (blocks, channels) in enumerate(zip(stage_sizes, stage_channels, strict=True), start=1):
    for b in range(1, blocks + 1):
      stride = 2 if (b == 1 and s > 1) else 1
      changes = stride != 1 or in_channels != channels * expansion
      plans.append(
        _BlockPlan(
          f"stage{s}_block{b}",
          in_channels,
          channels,
          stride,
          projection=changes and shortcut == "projection",
        )
      )
      in_channels = channels * expansion
  return tuple(plans)


def _batch_norm(features: int, dtype, rngs: nnx.Rngs) -> nnx.BatchNorm:
  return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)


def _conv(
  cin: int, cout: int, size: int, stride: int, source: sources.KernelSource, dtype, rngs: nnx.Rngs
):
  return conv_layer(
    cin,
    cout,
    size,
    source=source,
    strides=stride,
    padding=size // 2,
    use_bias=False,
    dtype=dtype,
    rngs=rngs,
  )


def _pad_shortcut(x: Array, stride: int, out_channels: int) -> Array:
  """He et al.'s option A: subsample, then append zero channels (no parameters)."""
  x = x[:, ::stride, ::stride, :]
  extra = out_channels - x.shape[-1]
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra))) if extra else x


class BasicBlock(nnx.Module):
  """conv3x3-BN-ReLU, conv3x3-BN, plus the shortcut, ReLU (expansion 1)."""

  expansion = 1

  def __init__(
    self, plan: _BlockPlan, specs: Mapping[str, sources.KernelSource], *, dtype, rngs: nnx.Rngs
  ):
    c, name = plan.channels, plan.name
    r = functools.partial(layer_rngs, rngs)  # ``rngs`` are the block's own (_build_stages)
    self.conv1 = _conv(
      plan.in_channels, c, 3, plan.stride, specs[f"{name}_conv1"], dtype, r("conv1")
    )
    self.bn1 = _batch_norm(c, dtype, r("bn1"))
    self.conv2 = _conv(c, c, 3, 1, specs[f"{name}_conv2"], dtype, r("conv2"))
    self.bn2 = _batch_norm(c, dtype, r("bn2"))
    _add_shortcut(self, plan, c, specs, dtype, rngs)

  def __call__(self, x: Array) -> Array:
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return jax.nn.relu(y + _apply_shortcut(self, x))


class Bottleneck(nnx.Module):
  """conv1x1-BN-ReLU, conv3x3(stride)-BN-ReLU, conv1x1(4x)-BN, plus shortcut, ReLU.

  The stride sits on the 3x3 conv (torchvision's "ResNet v1.5").
  """

  expansion = 4

  def __init__(
    self, plan: _BlockPlan, specs: Mapping[str, sources.KernelSource], *, dtype, rngs: nnx.Rngs
  ):
    c, out, name = plan.channels, plan.channels * self.expansion, plan.name
    r = functools.partial(layer_rngs, rngs)  # ``rngs`` are the block's own (_build_stages)
    self.conv1 = _conv(plan.in_channels, c, 1, 1, specs[f"{name}_conv1"], dtype, r("conv1"))
    self.bn1 = _batch_norm(c, dtype, r("bn1"))
    self.conv2 = _conv(c, c, 3, plan.stride, specs[f"{name}_conv2"], dtype, r("conv2"))
    self.bn2 = _batch_norm(c, dtype, r("bn2"))
    self.conv3 = _conv(c, out, 1, 1, specs[f"{name}_conv3"], dtype, r("conv3"))
    self.bn3 = _batch_norm(out, dtype, r("bn3"))
    _add_shortcut(self, plan, out, specs, dtype, rngs)

  def __call__(self, x: Array) -> Array:
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = jax.nn.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return jax.nn.relu(y + _apply_shortcut(self, x))


def _add_shortcut(
  block: nnx.Module,
  plan: _BlockPlan,
  out_channels: int,
  specs: Mapping[str, sources.KernelSource],
  dtype,
  rngs: nnx.Rngs,
) -> None:
  """Projection (1x1 conv + BN) when the plan asks for one; otherwise identity or option A."""
  block.stride, block.out_channels = plan.stride, out_channels
  if plan.projection:
    block.shortcut = _conv(
      plan.in_channels,
      out_channels,
      1,
      plan.stride,
      specs[f"{plan.name}_shortcut"],
      dtype,
      layer_rngs(rngs, "shortcut"),
    )
    block.shortcut_bn = _batch_norm(out_channels, dtype, layer_rngs(rngs, "shortcut_bn"))
  else:
    block.shortcut = nnx.data(None)
    block.shortcut_bn = nnx.data(None)


def _apply_shortcut(block: nnx.Module, x: Array) -> Array:
  if block.shortcut is not None:
    return block.shortcut_bn(block.shortcut(x))
  if block.stride != 1 or block.out_channels != x.shape[-1]:
    return _pad_shortcut(x, block.stride, block.out_channels)
  return x


class _ResNetBase(nnx.Module):
  """Stem, residual stages, global average pool, FC; subclasses say what the stem is."""

  def _build_stages(
    self,
    plans: tuple[_BlockPlan, ...],
    block: str,
    specs: Mapping[str, sources.KernelSource],
    dtype,
    rngs: nnx.Rngs,
  ) -> int:
    block_class = Bottleneck if block == "bottleneck" else BasicBlock
    for plan in plans:
      block_rngs = layer_rngs(rngs, plan.name)  # paired arms: see hybridconv.nn.layer_rngs
      setattr(self, plan.name, block_class(plan, specs, dtype=dtype, rngs=block_rngs))
    self.block_names = tuple(plan.name for plan in plans)
    return plans[-1].channels * block_class.expansion

  def _stages_and_head(self, x: Array) -> Array:
    for name in self.block_names:
      x = getattr(self, name)(x)
    return self.fc(jnp.mean(x, axis=(1, 2)))


def _check_common(image_shape: tuple[int, int, int], width: float, model: str) -> None:
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f"{model}: image_shape must be (height, width, channels), got {image_shape}")
  if not width > 0:
    raise ValueError(f"{model}: width must be a positive channel multiplier, got {width}")


def _scaled(channels: int, width: float) -> int:
  return max(1, round(channels * width))


class CifarResNet(_ResNetBase):
  """He et al. (2015, sec. 4.2) ResNets for 32x32 inputs: depth 6n+2, 16/32/64 channels.

  conv3x3(16)-BN-ReLU stem, three stages of n basic blocks (16, 32, 64
  channels, strides 1, 2, 2), global average pool, FC. ResNet-20 is n=3,
  ResNet-56 is n=9.

  Shortcuts when the shape changes (first block of stages 2 and 3):
  'projection' (default) is a 1x1 stride-2 conv + BN -- the paper's option B,
  and a conv that a kernel spec can reach (272,474 parameters for ResNet-20
  at 10 classes); 'pad' is the paper's CIFAR option A, subsampling plus zero
  channels, which gives the paper's 0.27M (269,722 for ResNet-20, 853,018 for
  ResNet-56). Global average pooling makes it work at any input size
  (28x28 Fashion-MNIST included).

  Args:
    num_classes, image_shape, first_layer, kernels, width, dtype, rngs: as
      :class:`hybridconv.models.SimpleCNN`.
    depth: 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...).
    shortcut: 'projection' or 'pad'.
  """

  def __init__(
    self,
    num_classes: int,
    image_shape: tuple[int, int, int],
    *,
    first_layer: Any = "free",
    kernels: Mapping[str, Any] | None = None,
    width: float = 1.0,
    dtype=None,
    depth: int = 20,
    shortcut: str = "projection",
    kernel_seed: int | None = None,
    rngs: nnx.Rngs,
  ):
    _check_common(image_shape, width, "CifarResNet")
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
      raise ValueError(
        f"CifarResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, ...), got {depth!r}"
      )
    if shortcut not in SHORTCUTS:
      raise ValueError(f"CifarResNet shortcut={shortcut!r} is not one of {SHORTCUTS}")
    stem = _scaled(16, width)
    channels = tuple(_scaled(c, width) for c in (16, 32, 64))
    plans = _plan(((depth - 2) // 6,) * 3, channels, stem, 1, shortcut)
    self.conv_layer_names = ("conv1",) + sum((p.conv_names("basic") for p in plans), ())
    specs = resolve_sources(
      self.conv_layer_names, first_layer=first_layer, kernels=kernels, seed=kernel_seed
    )
    self.conv1 = _conv(
      image_shape[-1], stem, 3, 1, specs["conv1"], dtype, layer_rngs(rngs, "conv1")
    )
    self.bn1 = _batch_norm(stem, dtype, layer_rngs(rngs, "bn1"))
    features = self._build_stages(plans, "basic", specs, dtype, rngs)
    self.fc = nnx.Linear(features, num_classes, dtype=dtype, rngs=layer_rngs(rngs, "fc"))

  def __call__(self, x: Array) -> Array:
    return self._stages_and_head(jax.nn.relu(self.bn1(self.conv1(x))))


class ResNet(_ResNetBase):
  """ImageNet ResNets in torchvision's layout (parameter counts match torchvision's).

  conv7x7/2(64)-BN-ReLU, maxpool 3x3/2 (padding 1), four stages (64, 128,
  256, 512 channels; bottleneck outputs 4x that; strides 1, 2, 2, 2) with a
  1x1 conv + BN projection shortcut on the first block of a stage whose shape
  changes, global average pool, FC with bias. ResNet-18: 11,689,512
  parameters at 1000 classes; ResNet-50: 25,557,032. Global average pooling
  makes it work at any input size (224x224 for ImageNet; 64x64 for quick tests).

  Args:
    num_classes, image_shape, first_layer, kernels, width, dtype, rngs: as
      :class:`hybridconv.models.SimpleCNN`.
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block: 'basic' or 'bottleneck'.
  """

  def __init__(
    self,
    num_classes: int,
    image_shape: tuple[int, int, int],
    *,
    first_layer: Any = "free",
    kernels: Mapping[str, Any] | None = None,
    width: float = 1.0,
    dtype=None,
    stage_sizes: tuple[int, ...] = (2, 2, 2, 2),
    block: str = "basic",
    kernel_seed: int | None = None,
    rngs: nnx.Rngs,
  ):
    _check_common(image_shape, width, "ResNet")
    if block not in BLOCKS:
      raise ValueError(f"ResNet block={block!r} is not one of {BLOCKS}")
    if not stage_sizes or any(not isinstance(n, int) or n < 1 for n in stage_sizes):
      raise ValueError(f"ResNet stage_sizes must be positive ints, got {stage_sizes!r}")
    if len(stage_sizes) > 4:
      raise ValueError(f"ResNet has at most 4 stages (64-512 channels), got {stage_sizes!r}")
    expansion = 4 if block == "bottleneck" else 1
    stem = _scaled(64, width)
    channels = tuple(_scaled(64 * 2**i, width) for i in range(len(stage_sizes)))
    plans = _plan(tuple(stage_sizes), channels, stem, expansion, "projection")
    self.conv_layer_names = ("conv1",) + sum((p.conv_names(block) for p in plans), ())
    specs = resolve_sources(
      self.conv_layer_names, first_layer=first_layer, kernels=kernels, seed=kernel_seed
    )
    self.conv1 = _conv(
      image_shape[-1], stem, 7, 2, specs["conv1"], dtype, layer_rngs(rngs, "conv1")
    )
    self.bn1 = _batch_norm(stem, dtype, layer_rngs(rngs, "bn1"))
    features = self._build_stages(plans, block, specs, dtype, rngs)
    self.fc = nnx.Linear(features, num_classes, dtype=dtype, rngs=layer_rngs(rngs, "fc"))

  def __call__(self, x: Array) -> Array:
    x = jax.nn.relu(self.bn1(self.conv1(x)))
    x = max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    return self._stages_and_head(x)


# Named variants (functools.partial, so the class stays one code path).
resnet20 = functools.partial(CifarResNet, depth=20)
resnet56 = functools.partial(CifarResNet, depth=56)
resnet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
resnet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
resnet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
resnet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block="bottleneck")
resnet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block="bottleneck")
