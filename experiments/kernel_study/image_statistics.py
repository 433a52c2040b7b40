"""Orientation and frequency energy of the training images, at the first layer's scale.

What a learnable Gabor layer could tune to: the spectral energy of random 7x7
patches (each mean-subtracted) of Fashion-MNIST's training images, per
orientation bin and per radial frequency band, measured with the same
functions that describe filters (:mod:`hybridconv.analysis.filter_stats`).
Writes ``image_statistics.json`` into the study's results folder, where
``hybridconv compare`` draws it beside the learned Gabor parameters.

    .venv/bin/python experiments/kernel_study/image_statistics.py \
        --out experiments/kernel_study/results/fashion_mnist [--patch 7] [--patches 20000]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from hybridconv.analysis import filter_stats
from hybridconv.data.idx import load_idx_dataset
from hybridconv.run_layout import IMAGE_STATISTICS_FILE

EDGES = (0.0, 0.0625, 0.125, 0.25, 0.5, 0.75)


def patch_statistics(images: np.ndarray, patch: int, count: int, seed: int = 0) -> dict:
  """Mean orientation and frequency energy of ``count`` random mean-subtracted patches."""
  rng = np.random.default_rng(seed)
  n, h, w = images.shape[:3]
  index = rng.integers(0, n, count)
  ys, xs = rng.integers(0, h - patch + 1, count), rng.integers(0, w - patch + 1, count)
  patches = (
    np.stack(
      [images[i, y : y + patch, x : x + patch, 0] for i, y, x in zip(index, ys, xs, strict=True)],
      -1,
    ).astype(np.float32)
    / 255.0
  )
  patches -= patches.mean(axis=(0, 1), keepdims=True)
  keep = patches.std(axis=(0, 1)) > 1e-3  # flat background patches carry no orientation
  patches = patches[..., keep]
  orientation = np.asarray(filter_stats.orientation_energy(patches)).mean(axis=1)
  frequency = np.asarray(filter_stats.frequency_energy(patches, EDGES)).mean(axis=1)
  return {
    "patch": patch,
    "patches": int(keep.sum()),
    "orientation_bin_centres_rad": [j * np.pi / len(orientation) for j in range(len(orientation))],
    "orientation_energy": orientation.tolist(),
    "frequency_edges": list(EDGES),
    "frequency_energy": frequency.tolist(),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="the study's results folder")
  parser.add_argument("--patch", type=int, default=7)
  parser.add_argument("--patches", type=int, default=20000)
  args = parser.parse_args()
  dataset = load_idx_dataset("fashion_mnist", "")
  stats = patch_statistics(dataset.train_images, args.patch, args.patches)
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, IMAGE_STATISTICS_FILE)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(stats, f, indent=2)
  print(f"wrote {path}: orientation energy {np.round(stats['orientation_energy'], 3).tolist()}")


if __name__ == "__main__":
  main()
