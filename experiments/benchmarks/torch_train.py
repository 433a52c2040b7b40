"""PyTorch peer of train_throughput.py: the same models, first-layer sources and train step.

Runs under the PyTorch interpreter (.venv-torch: torch's CPU wheel here exists
for Python 3.11 only, hybridconv needs 3.12) as a worker: it reads one JSON
command per line on stdin, ``{"model": "simple_cnn", "source": "gabor",
"steps": 10, "batch": 128}``, runs that many training steps and answers
``{"seconds_per_step": s}`` on stdout. A persistent worker lets the JAX side
interleave its rounds with these, so machine noise hits both alike.

The models mirror hybridconv's: SimpleCNN (conv5x5(32)-BN-ReLU-pool,
conv5x5(64)-BN-ReLU-pool, FC128-ReLU, FC) and the CIFAR ResNet-20 (3x3 stem,
3 stages of 3 basic blocks, projection shortcuts, no conv biases). The first
conv's kernel comes from the source: free (nn.Conv2d), fixed/random (a frozen
buffer), gabor (real Gabor kernels computed from learned theta and frequency
every step, one per (input, output) channel pair, zero-mean and unit-norm as in
hybridconv), hybrid (half gabor, half free). Optimiser: AdamW, cross-entropy.
"""

from __future__ import annotations

import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class GaborKernel(nn.Module):
  """(cout, cin, k, k) real Gabor kernels with learned theta and frequency."""

  def __init__(self, cin: int, cout: int, k: int):
    super().__init__()
    n = cin * cout
    self.theta = nn.Parameter(torch.arange(n, dtype=torch.float32) % 8 * math.pi / 8)
    self.raw_frequency = nn.Parameter(torch.zeros(n))
    frequency = 0.25 * 2.0 ** -(torch.arange(n) // 8 % 3).float()
    self.register_buffer("sigma", 0.56 / frequency)
    self.register_buffer("gamma", torch.ones(n))
    self.register_buffer("psi", torch.zeros(n))
    coords = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    self.register_buffer("x", coords[None, :].expand(k, k))
    self.register_buffer("y", -coords[:, None].expand(k, k))
    self.shape = (cout, cin, k, k)

  def forward(self) -> torch.Tensor:
    lo, hi = math.log(0.02), math.log(0.45)
    frequency = torch.exp(lo + (hi - lo) * torch.sigmoid(self.raw_frequency))[:, None, None]
    theta = self.theta[:, None, None]
    xr = self.x * torch.cos(theta) + self.y * torch.sin(theta)
    yr = -self.x * torch.sin(theta) + self.y * torch.cos(theta)
    sigma, gamma = self.sigma[:, None, None], self.gamma[:, None, None]
    envelope = torch.exp(-(xr**2 + (gamma * yr) ** 2) / (2 * sigma**2))
    kernel = envelope * torch.cos(2 * math.pi * frequency * xr + self.psi[:, None, None])
    kernel = kernel - kernel.mean(dim=(1, 2), keepdim=True)
    kernel = kernel / kernel.pow(2).sum(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)
    cout, cin, k, _ = self.shape
    return kernel.reshape(cin, cout, k, k).transpose(0, 1) / math.sqrt(cin)


class SourceConv(nn.Module):
  """A conv whose kernel comes from one of the five sources."""

  def __init__(self, source: str, cin: int, cout: int, k: int, stride: int = 1, bias: bool = True):
    super().__init__()
    self.source, self.stride, self.padding = source, stride, k // 2
    self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
    free = cout - cout // 2 if source == "hybrid" else cout
    if source in ("free", "hybrid"):
      self.weight = nn.Parameter(nn.init.kaiming_normal_(torch.empty(free, cin, k, k)))
    if source in ("gabor", "hybrid"):
      self.gabor = GaborKernel(cin, cout - free if source == "hybrid" else cout, k)
    if source in ("fixed", "random"):
      self.register_buffer("frozen", torch.randn(cout, cin, k, k) / math.sqrt(cin * k * k))

  def kernel(self) -> torch.Tensor:
    if self.source == "free":
      return self.weight
    if self.source == "gabor":
      return self.gabor()
    if self.source == "hybrid":
      return torch.cat([self.gabor(), self.weight], dim=0)
    return self.frozen

  def forward(self, x):
    return F.conv2d(x, self.kernel(), self.bias, self.stride, self.padding)


class SimpleCNN(nn.Module):
  def __init__(self, source: str, num_classes: int = 10):
    super().__init__()
    self.conv1, self.bn1 = SourceConv(source, 1, 32, 5), nn.BatchNorm2d(32)
    self.conv2, self.bn2 = nn.Conv2d(32, 64, 5, padding=2), nn.BatchNorm2d(64)
    self.fc1, self.fc2 = nn.Linear(7 * 7 * 64, 128), nn.Linear(128, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
    x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
    return self.fc2(F.relu(self.fc1(x.flatten(1))))


class BasicBlock(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.shortcut = None
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(
        nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
      )

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet20(nn.Module):
  def __init__(self, source: str, num_classes: int = 10):
    super().__init__()
    self.conv1, self.bn1 = SourceConv(source, 3, 16, 3, bias=False), nn.BatchNorm2d(16)
    blocks, cin = [], 16
    for stage, cout in enumerate((16, 32, 64)):
      for b in range(3):
        blocks.append(BasicBlock(cin, cout, 2 if (b == 0 and stage > 0) else 1))
        cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(64, num_classes)

  def forward(self, x):
    x = self.blocks(F.relu(self.bn1(self.conv1(x))))
    return self.fc(x.mean(dim=(2, 3)))


MODELS = {"simple_cnn": (SimpleCNN, (1, 28, 28)), "resnet20": (ResNet20, (3, 32, 32))}


class Trainer:
  """Model, optimiser and one fixed random batch; ``run(steps)`` times training steps."""

  def __init__(self, model: str, source: str, batch: int):
    torch.manual_seed(0)
    cls, shape = MODELS[model]
    self.model = cls(source).train()
    self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-4)
    self.x = torch.randn(batch, *shape)
    self.y = torch.randint(0, 10, (batch,))

  def step(self):
    self.optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(self.model(self.x), self.y)
    loss.backward()
    self.optimizer.step()
    return loss

  def run(self, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
      loss = self.step()
    loss.item()
    return (time.perf_counter() - start) / steps


def main():
  trainers = {}
  for line in sys.stdin:
    command = json.loads(line)
    key = (command["model"], command["source"], command["batch"])
    if key not in trainers:
      trainers[key] = Trainer(*key)
      trainers[key].run(2)  # warm-up
    seconds = trainers[key].run(command["steps"])
    print(json.dumps({"seconds_per_step": seconds}), flush=True)


if __name__ == "__main__":
  main()
