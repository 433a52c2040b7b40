"""PyTorch peers for layer_benchmark.py: nn.Conv2d and GaborNet's GaborConv2d, forward+backward.

Runs under the PyTorch interpreter (.venv-torch, see `make bench-setup`); prints
one JSON line {name: median seconds}. Kept separate because torch's CPU wheel
here exists for Python 3.11 only, while hybridconv needs 3.12.
"""

import argparse
import json
import statistics
import time

import torch
from GaborNet import GaborConv2d


def main():
  parser = argparse.ArgumentParser()
  for name in ("batch", "rounds", "cin", "cout", "kernel", "stride", "padding"):
    parser.add_argument(f"--{name}", type=int, required=True)
  parser.add_argument("--hw", type=int, nargs=2, required=True)
  parser.add_argument("--threads", type=int, default=0)
  parser.add_argument("--input-grad", action="store_true")
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  x = torch.randn(args.batch, args.cin, *args.hw, requires_grad=args.input_grad)
  layers = {
    "nn.Conv2d": torch.nn.Conv2d(args.cin, args.cout, args.kernel, args.stride, args.padding),
    "GaborNet GaborConv2d": GaborConv2d(
      args.cin, args.cout, args.kernel, args.stride, args.padding
    ),
  }
  cotangent = torch.randn_like(layers["nn.Conv2d"](x))

  def step(layer):
    start = time.perf_counter()
    layer.zero_grad(set_to_none=True)
    x.grad = None
    (0.5 * (layer(x) - cotangent) ** 2).sum().backward()
    return time.perf_counter() - start

  for layer in layers.values():
    layer.train()
    step(layer)
  times = {name: [] for name in layers}
  for _ in range(args.rounds):
    for name, layer in layers.items():
      times[name].append(step(layer))
  print(json.dumps({name: statistics.median(t) for name, t in times.items()}))


if __name__ == "__main__":
  main()
