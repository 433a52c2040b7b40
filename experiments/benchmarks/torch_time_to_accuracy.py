"""PyTorch peer of time_to_accuracy.py: train the same model the same way, time each evaluation.

Run by the PyTorch interpreter (``.venv-torch`` on the CPU machine, where
torch's wheel exists for Python 3.11 only; ``sys.executable`` on a GPU machine
that has jax and torch in one Python). ``time_to_accuracy.py`` builds the spec
from hybridconv's config and passes it as JSON::

    .venv-torch/bin/python experiments/benchmarks/torch_time_to_accuracy.py --spec '{...}'

and reads one JSON object from the last line of stdout: the seconds and epochs
to the target test accuracy (null if not reached) and every evaluation as
``{"step", "epoch", "seconds", "accuracy", "train_loss"}``. Progress goes to
stderr.

What is mirrored from hybridconv, so that the two runs differ in framework and
not in recipe:

* the models of ``torch_train.py`` (imported, not copied), with the ResNet-20
  stem built for the images' channel count (hybridconv's takes 1 channel on
  Fashion-MNIST; ``torch_train`` builds it for 3-channel CIFAR), BatchNorm
  momentum as in hybridconv (SimpleCNN uses Flax's default 0.99, i.e. PyTorch
  momentum 0.01; ResNet-20 0.9, i.e. 0.1) and, by default, hybridconv's
  initialisation (LeCun-normal weights, zero biases) instead of PyTorch's;
* the data: the same IDX files read with numpy, scaled to [0, 1] and normalised
  by the training set's per-channel mean and std; each epoch a fresh
  permutation, the last partial batch dropped; augmentation on the uint8
  pixels before normalisation (zero-padded random crop, horizontal flip);
* the optimiser (``hybridconv/training/optim.py``): AdamW with decoupled decay, or SGD
  with L2 decay before (Nesterov) momentum; decay only on weights with
  ndim >= 2 that are not Gabor parameters; Gabor parameters at
  ``kernel_lr_multiplier`` times the learning rate; the learning rate of update
  ``s`` is ``learning_rate(s)``, the same warm-up + cosine / step / constant
  schedule as optax's; optional global-norm clipping;
* label smoothing in the training loss; evaluation of the whole test split,
  BatchNorm in inference mode, every ``eval_every_steps`` steps and at the end
  (hybridconv converts every duration of the config to steps for the spec).

Differences that remain: data order and augmentation draws come from PyTorch's
RNG, not JAX's; ``fixed`` kernels are a frozen random bank in ``torch_train``
(hybridconv's is a Gabor bank), so ``fixed`` compares different first layers.

Timing: the clock starts after torch is imported and the device initialised
(the JAX side likewise starts after JAX's backend is up) and covers reading the
data, building the model, every step and every evaluation. ``accuracy.item()``
synchronises, so an evaluation's time stamp is taken after the device has
finished it. On CUDA, cuDNN autotuning (``cudnn.benchmark``) is on and float32
matmuls may use TF32 (``set_float32_matmul_precision('high')``), as JAX's
default precision does on recent NVIDIA GPUs; cuDNN convolutions use TF32 by
default in both.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import pathlib
import sys
import time

import numpy as np

try:  # The JAX environment has no torch; its tests import this file for the pure helpers.
  import torch
  import torch.nn.functional as F
  import torch_train
  from torch import nn
except ModuleNotFoundError:
  torch = None

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
SPLITS = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# ---------------------------------------------------------------------------
# Pure helpers (numpy and Python only; tested against hybridconv from the JAX venv)


def read_idx(path: pathlib.Path, magic: int) -> np.ndarray:
  """One IDX file (plain or .gz) as a uint8 array of the dimensions in its header."""
  raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
  found = int.from_bytes(raw[:4], "big")
  if found != magic:
    raise ValueError(f"{path}: IDX magic 0x{found:08x}, expected 0x{magic:08x}")
  ndim = raw[3]
  dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  offset = 4 + 4 * ndim
  if len(raw) != offset + math.prod(dims):
    raise ValueError(f"{path}: {len(raw)} bytes, header says {offset + math.prod(dims)}")
  return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


def load_split(directory: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 ``(N, H, W, 1)`` and int64 labels of one split; prefers the plain files."""
  arrays = []
  for stem, magic in zip(SPLITS[split], (IMAGES_MAGIC, LABELS_MAGIC), strict=True):
    path = directory / stem
    arrays.append(read_idx(path if path.is_file() else path.with_name(stem + ".gz"), magic))
  return arrays[0][..., None], arrays[1].astype(np.int64)


def channel_stats(images: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of uint8 ``(N, H, W, C)`` images in [0, 1] units, as hybridconv.

  Float64 sums chunk by chunk, std from E[x^2] - mean^2, a constant channel left
  unscaled: the same arithmetic as ``hybridconv.data.augment.channel_stats``.
  """
  channels = images.shape[-1]
  total, total_sq = np.zeros(channels), np.zeros(channels)
  for start in range(0, len(images), chunk):
    part = images[start : start + chunk].reshape(-1, channels).astype(np.float64)
    total += part.sum(0)
    total_sq += (part * part).sum(0)
  count = images.size // channels
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
  std = np.where(std > 0, std / 255, 1.0)
  return (mean / 255).astype(np.float32), std.astype(np.float32)


def learning_rate(step: int, spec: dict) -> float:
  """The learning rate of update ``step`` (0-based), as ``training.optim.learning_rate_schedule``.

  Linear warm-up from 0 over ``warmup_steps``, then cosine decay to
  ``peak * end_learning_rate_factor`` at ``total_steps`` (optax's
  ``warmup_cosine_decay_schedule``), or step decay (``step_factor`` at each of
  ``step_boundaries``, counted from the start of the run) or a constant. The
  spec carries every duration in steps, converted once by hybridconv.
  """
  optim, total_steps = spec["optim"], spec["total_steps"]
  peak = optim["learning_rate"]
  warmup = min(spec["warmup_steps"], max(total_steps - 1, 0))
  if warmup > 0 and step < warmup:
    return peak * step / warmup
  after = step - warmup
  if optim["schedule"] == "cosine":
    decay_steps = max(total_steps, warmup + 1) - warmup
    alpha = optim["end_learning_rate_factor"] if peak != 0 else 0.0
    cosine = 0.5 * (1 + math.cos(math.pi * min(after, decay_steps) / decay_steps))
    return peak * ((1 - alpha) * cosine + alpha)
  if optim["schedule"] == "step":
    boundaries = {b - warmup: optim["step_factor"] for b in spec["step_boundaries"]}
    return peak * math.prod(f for b, f in sorted(boundaries.items()) if after >= b)
  if optim["schedule"] == "constant":
    return peak
  raise ValueError(f"unknown schedule {optim['schedule']!r}")


def first_crossing(evals: list[dict], target: float) -> dict | None:
  """The first evaluation with accuracy >= target, or None."""
  return next((e for e in evals if e["accuracy"] >= target), None)


# ---------------------------------------------------------------------------
# Model, optimiser, data on the device


def _lecun_normal_(weight) -> None:
  """Flax's default ``lecun_normal``: truncated normal (2 std), variance 1 / fan_in."""
  std = math.sqrt(1.0 / weight[0].numel()) / 0.87962566103423978
  nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


def build_model(spec: dict, in_channels: int, num_classes: int, init: str):
  """The ``torch_train`` model for ``spec``, with hybridconv's BatchNorm momentum (and init)."""
  source = spec["source"]
  if spec["model"] == "simple_cnn":
    if in_channels != 1:
      raise ValueError("torch_train.SimpleCNN takes 1-channel 28x28 images")
    model, bn_momentum = torch_train.SimpleCNN(source, num_classes), 0.01
  elif spec["model"] == "resnet20":
    model, bn_momentum = torch_train.ResNet20(source, num_classes), 0.1
    model.conv1 = torch_train.SourceConv(source, in_channels, 16, 3, bias=False)
  else:
    raise ValueError(f"no PyTorch peer for model {spec['model']!r}")
  for module in model.modules():
    if isinstance(module, nn.BatchNorm2d):
      module.momentum = bn_momentum
    if init != "hybridconv":
      continue
    if isinstance(module, (nn.Conv2d, nn.Linear)):
      _lecun_normal_(module.weight)
      if module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, torch_train.SourceConv):
      if hasattr(module, "weight"):  # the free kernels of 'free' and 'hybrid'
        _lecun_normal_(module.weight)
      if module.source == "random":  # hybridconv: He normal, sqrt(2 / fan_in)
        module.frozen.mul_(math.sqrt(2.0))
  return model


def build_optimizer(model, optim: dict):
  """Parameter groups as hybridconv's masks: decayed weights, Gabor parameters, the rest."""
  gabor = {
    id(p) for m in model.modules() if isinstance(m, torch_train.GaborKernel) for p in m.parameters()
  }
  groups = {"decay": [], "gabor": [], "other": []}
  for p in model.parameters():
    key = "gabor" if id(p) in gabor else "decay" if p.ndim >= 2 else "other"
    groups[key].append(p)
  multiplier = {"decay": 1.0, "gabor": optim["kernel_lr_multiplier"], "other": 1.0}
  param_groups = [
    {
      "params": params,
      "lr_multiplier": multiplier[key],
      "weight_decay": optim["weight_decay"] if key == "decay" else 0.0,
    }
    for key, params in groups.items()
    if params
  ]
  if optim["name"] == "adamw":
    return torch.optim.AdamW(
      param_groups, lr=0.0, betas=(optim["b1"], optim["b2"]), eps=optim["eps"]
    )
  if optim["name"] == "sgd":
    momentum = optim["momentum"]
    return torch.optim.SGD(
      param_groups, lr=0.0, momentum=momentum, nesterov=bool(optim["nesterov"]) and momentum > 0
    )
  raise ValueError(f"unknown optimiser {optim['name']!r}")


def augment(images, crop_padding: int, flip: bool):
  """Zero-padded random crop and left-right flip of uint8 ``(B, C, H, W)``, per image."""
  batch, _, height, width = images.shape
  device = images.device
  if crop_padding > 0:
    p = crop_padding
    padded = F.pad(images, (p, p, p, p))
    offsets = torch.randint(0, 2 * p + 1, (2, batch), device=device)
    rows = offsets[0][:, None] + torch.arange(height, device=device)
    cols = offsets[1][:, None] + torch.arange(width, device=device)
    index = torch.arange(batch, device=device)[:, None, None]
    # Advanced indices around a slice: the result is (B, H, W, C).
    images = padded[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
  if flip:
    flipped = torch.rand(batch, device=device) < 0.5
    images = torch.where(flipped[:, None, None, None], images.flip(3), images)
  return images


def normalise(images, mean, std):
  return (images.float() * (1 / 255) - mean) / std


def evaluate(model, images, labels, mean, std, batch_size: int) -> float:
  """Top-1 accuracy on the whole split (BatchNorm running statistics)."""
  model.eval()
  correct = torch.zeros((), dtype=torch.int64, device=images.device)
  with torch.no_grad():
    for start in range(0, len(labels), batch_size):
      logits = model(normalise(images[start : start + batch_size], mean, std))
      correct += (logits.argmax(1) == labels[start : start + batch_size]).sum()
  model.train()
  return correct.item() / len(labels)


def train(spec: dict) -> dict:
  """Trains ``spec`` to its end (or to the target), timing every evaluation."""
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  if device.type == "cuda":
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
  if spec["num_threads"] > 0:
    torch.set_num_threads(spec["num_threads"])
  torch.manual_seed(spec["seed"])
  torch.zeros(1, device=device).sum().item()  # runtime start-up stays outside the clock

  start = time.perf_counter()
  directory = pathlib.Path(spec["data_dir"])
  train_images, train_labels = load_split(directory, "train")
  test_images, test_labels = load_split(directory, "test")
  mean, std = (
    torch.as_tensor(a, device=device)[None, :, None, None] for a in channel_stats(train_images)
  )

  def to_device(images, labels):
    # torch.tensor copies: the IDX arrays are read-only views of the file bytes.
    return (
      torch.tensor(images, device=device).permute(0, 3, 1, 2).contiguous(),
      torch.tensor(labels, device=device),
    )

  train_x, train_y = to_device(train_images, train_labels)
  test_x, test_y = to_device(test_images, test_labels)
  num_classes = spec["num_classes"]
  model = build_model(spec, train_x.shape[1], num_classes, spec["init"]).to(device).train()
  optim = spec["optim"]
  optimizer = build_optimizer(model, optim)
  steps_per_epoch, total_steps = len(train_y) // spec["batch_size"], spec["total_steps"]
  eval_every = spec["eval_every_steps"]
  batch, crop, flip = spec["batch_size"], spec["crop_padding"], spec["horizontal_flip"]
  permutations = torch.Generator().manual_seed(spec["seed"])

  evals, step, loss_sum, loss_count = [], 0, torch.zeros((), device=device), 0
  stopped = False
  while step < total_steps:
    position = step % steps_per_epoch
    if position == 0:
      order = torch.randperm(len(train_y), generator=permutations).to(device)
    index = order[position * batch : (position + 1) * batch]
    images = normalise(augment(train_x[index], crop, flip), mean, std)
    rate = learning_rate(step, spec)
    for group in optimizer.param_groups:
      group["lr"] = rate * group["lr_multiplier"]
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), train_y[index], label_smoothing=spec["label_smoothing"])
    loss.backward()
    if optim["grad_clip_norm"] > 0:
      nn.utils.clip_grad_norm_(model.parameters(), optim["grad_clip_norm"])
    optimizer.step()
    loss_sum += loss.detach()
    loss_count += 1
    step += 1
    if step % eval_every == 0 or step == total_steps:
      accuracy = evaluate(model, test_x, test_y, mean, std, spec["eval_batch_size"])
      seconds = time.perf_counter() - start
      evals.append(
        {
          "step": step,
          "epoch": step / steps_per_epoch,
          "seconds": seconds,
          "accuracy": accuracy,
          "train_loss": loss_sum.item() / loss_count,
        }
      )
      loss_sum.zero_()
      loss_count = 0
      print(
        f"pytorch: step {step}/{total_steps} epoch {step / steps_per_epoch:.2f} "
        f"{seconds:.1f} s accuracy {accuracy:.4f}",
        file=sys.stderr,
        flush=True,
      )
      if spec["stop_at_target"] and accuracy >= spec["target"]:
        stopped = True
        break
  hit = first_crossing(evals, spec["target"])
  return {
    "framework": "pytorch",
    "version": torch.__version__,
    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    "target": spec["target"],
    "seconds_to_target": hit["seconds"] if hit else None,
    "epochs_to_target": hit["epoch"] if hit else None,
    "step_to_target": hit["step"] if hit else None,
    "final_accuracy": evals[-1]["accuracy"],
    "total_seconds": time.perf_counter() - start,
    "steps_per_epoch": steps_per_epoch,
    "total_steps": total_steps,
    "stopped_at_target": stopped,
    "evals": evals,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--spec", required=True, help="JSON written by time_to_accuracy.py")
  args = parser.parse_args()
  if torch is None:
    sys.exit("torch_time_to_accuracy.py needs PyTorch: run it with the PyTorch interpreter")
  print(json.dumps(train(json.loads(args.spec))), flush=True)


if __name__ == "__main__":
  main()
