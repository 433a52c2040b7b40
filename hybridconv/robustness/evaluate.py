"""``evaluate_workdir``: clean, corrupted and adversarial accuracy of a trained run.

Every evaluation is one jitted program per family, data-parallel like the
training evaluation: batches of ``config.eval_batch_size`` sharded over the
mesh axis ``'data'``, the model replicated, the last batch padded and masked.
The level (sigma, contrast factor, eps) and the random key are traced
arguments, so a family compiles once for all its levels. Images enter as uint8,
are scaled to [0, 1], corrupted or attacked there, and only then normalised
with the run's own mean and std -- so the clean evaluation computes exactly
what the run's evaluation computed. Attacks differentiate through the real
model in evaluation mode (BatchNorm running statistics, no dropout).

Randomness is fixed: the test and attack subsets are prefixes of one
permutation drawn with ``numpy``'s generator seeded by ``subset_seed`` (so the
attacked images are among the corrupted ones when both are subsets), and noise and PGD starts use
``fold_in(fold_in(fold_in(key(subset_seed), family), level), batch)``. Two runs
evaluated with the same settings see the same images and the same noise, so
the arms of a study are compared on paired data.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from hybridconv import sharding
from hybridconv.robustness import restore, suites
from hybridconv.run_layout import ROBUSTNESS_FILE

SCHEMA_VERSION = 1
DEFAULT_ATTACK_IMAGES = 2000


def model_apply(fns, model, images):
  """Logits of ``images`` in [0, 1]; ``model = (params, model_state, mean, std)``, eval mode."""
  params, model_state, mean, std = model
  logits, _ = fns.apply(
    params, model_state, (images - mean) / std, train=False, key=jax.random.key(0)
  )
  return logits


def _to_unit(images_u8):
  # The same float ops as hybridconv.data.augment.normalise, so clean logits match the run's.
  return images_u8.astype(jnp.float32) * (1 / 255)


def _correct(logits, labels, mask):
  return jnp.sum((jnp.argmax(logits, axis=-1) == labels) & mask, dtype=jnp.int32)


def _corrupted_correct(model, batch, level, key, *, fns, corrupt):
  images = corrupt(_to_unit(batch["image"]), level, key)
  return _correct(model_apply(fns, model, images), batch["label"], batch["mask"])


def _attacked_correct(model, batch, level, key, *, fns, attack):
  apply_fn = functools.partial(model_apply, fns)
  images = attack(apply_fn, model, _to_unit(batch["image"]), batch["label"], level, key)
  return _correct(apply_fn(model, images), batch["label"], batch["mask"])


def _family_fn(family: str, suite: suites.Suite, fns):
  """The per-batch ``(model, batch, level, key) -> correct count`` of ``family``."""
  registered = suites.REGISTRY[family]
  if registered.attack:
    return functools.partial(_attacked_correct, fns=fns, attack=registered.make(suite))
  return functools.partial(_corrupted_correct, fns=fns, corrupt=registered.make(suite))


def shard_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, mesh) -> list[dict]:
  """Padded, masked batches as global arrays sharded over ``'data'`` (every process holds all).

  A set smaller than ``batch_size`` is one batch of :func:`fitted_batch_size`.
  """
  count = len(labels)
  batch_size = fitted_batch_size(count, batch_size, mesh)
  padded = -(-count // batch_size) * batch_size
  full = {
    "image": np.concatenate([images, np.zeros((padded - count, *images.shape[1:]), np.uint8)]),
    "label": np.concatenate([labels, np.zeros((padded - count,), labels.dtype)]),
    "mask": np.arange(padded) < count,
  }
  target = sharding.batch_sharded(mesh)
  batches = []
  for start in range(0, padded, batch_size):
    batch = {}
    for name, array in full.items():
      part = array[start : start + batch_size]
      batch[name] = jax.make_array_from_callback(part.shape, target, lambda i, p=part: p[i])
    batches.append(batch)
  return batches


def fitted_batch_size(count: int, batch_size: int, mesh) -> int:
  """``batch_size``, or less when ``count`` images fill less than one batch: the smallest
  multiple of the mesh size that holds them all.

  Padding is computed like real images, so a 500-image attack subset in batches of
  1,000 spent half of every FGSM and PGD step on padding. PGD's random start does
  not change with the batch: the threefry bits of an element depend on its index,
  not on the array's length.
  """
  devices = int(np.asarray(mesh.devices).size)
  return min(batch_size, max(1, -(-count // devices)) * devices)


def seeded_subset(num_images: int, requested: int, seed: int) -> np.ndarray:
  """Sorted indices of ``requested`` test images drawn with ``seed`` (0 = all).

  The first ``requested`` of one seeded permutation: a smaller subset of the
  same seed is always inside a larger one.
  """
  if requested == 0 or requested >= num_images:
    return np.arange(num_images)
  return np.sort(np.random.default_rng(seed).permutation(num_images)[:requested])


def run_family(
  family: str, suite: suites.Suite, fns, model, batches: list[dict], mesh, seed: int
) -> list[int]:
  """Correct counts for each level of ``family`` over ``batches``."""
  replicated = sharding.replicated(mesh)
  step = jax.jit(
    _family_fn(family, suite, fns),
    in_shardings=(replicated, sharding.batch_sharded(mesh), replicated, replicated),
    out_shardings=replicated,
  )
  family_key = jax.random.fold_in(jax.random.key(seed), suites.FAMILIES.index(family))
  counts = []
  for index, level in enumerate(suite.levels[family]):
    level_key = jax.random.fold_in(family_key, index)
    # Dispatch every batch, then fetch: the host never waits between batches.
    correct = [
      step(model, batch, jnp.float32(level), jax.random.fold_in(level_key, b))
      for b, batch in enumerate(batches)
    ]
    counts.append(int(sum(int(c) for c in jax.device_get(correct))))
  return counts


def evaluate_suite(
  suite: suites.Suite,
  fns,
  model,
  split: restore.TestSplit,
  *,
  batch_size: int,
  mesh,
  attack_images: int,
  subset_seed: int,
  test_images: int = 0,
) -> dict[str, Any]:
  """Runs ``suite`` on ``split``; returns the ``entries``/``summary`` part of the results.

  Args:
    suite: families and levels.
    fns: the run's model functions.
    model: ``(params, model_state, mean, std)``, replicated on ``mesh``.
    split: the test split.
    batch_size: global batch size (a multiple of the mesh size); a set smaller than one
      batch runs as one smaller batch (:func:`shard_batches`).
    mesh: the device mesh.
    attack_images: size of the attack subset (0 = the whole test split).
    subset_seed: seed of the subsets and of all noise.
    test_images: size of the subset for clean and corrupted accuracy (0 = all).
  """
  tested = seeded_subset(len(split.labels), test_images, subset_seed)
  full = shard_batches(split.images[tested], split.labels[tested], batch_size, mesh)
  subset = seeded_subset(len(split.labels), attack_images, subset_seed)
  attacked = (
    shard_batches(split.images[subset], split.labels[subset], batch_size, mesh)
    if any(f in suites.ATTACKS for f in suite.levels)
    else []
  )
  entries, seconds = [], {}
  for family in suites.FAMILIES:
    if not suite.levels.get(family):
      continue
    start = time.perf_counter()
    is_attack = family in suites.ATTACKS
    batches, num = (attacked, len(subset)) if is_attack else (full, len(tested))
    counts = run_family(family, suite, fns, model, batches, mesh, subset_seed)
    seconds[family] = round(time.perf_counter() - start, 3)
    for level, correct in zip(suite.levels[family], counts, strict=True):
      entries.append(
        {
          "family": family,
          "level": float(level),
          "accuracy": correct / num,
          "correct": correct,
          "num_images": num,
        }
      )
    logging.info(
      "robustness %s: %s (%.1f s)",
      family,
      ", ".join(
        f"{lv:.4g}: {c / num:.4f}" for lv, c in zip(suite.levels[family], counts, strict=True)
      ),
      seconds[family],
    )
  return {"entries": entries, "summary": summarize(entries), "seconds": seconds}


def summarize(entries: list[dict]) -> dict[str, float]:
  """Mean accuracy over the levels of each family, in :data:`suites.FAMILIES` order."""
  by_family: dict[str, list[float]] = {}
  for entry in entries:
    by_family.setdefault(entry["family"], []).append(entry["accuracy"])
  return {f: float(np.mean(by_family[f])) for f in suites.FAMILIES if f in by_family}


def check_request(
  suite: str | suites.Suite,
  *,
  corruptions_: list[str] | None,
  eps: list[float] | None,
  attack_images: int,
  pgd_steps: int | None,
  test_images: int = 0,
) -> suites.Suite:
  """The suite to run, after every check on the request (nothing loaded yet)."""
  chosen = suites.get_suite(suite) if isinstance(suite, str) else suite
  if suites.CLEAN not in chosen.levels:  # every result is read against the clean accuracy
    chosen = suites.Suite(chosen.name, {suites.CLEAN: (0.0,), **chosen.levels}, chosen.pgd_steps)
  if corruptions_:
    chosen = chosen.only(corruptions_)
  if eps is not None:
    chosen = chosen.with_eps(eps)
  if pgd_steps is not None:
    chosen = suites.Suite(chosen.name, chosen.levels, pgd_steps)
  if isinstance(attack_images, bool) or not isinstance(attack_images, int) or attack_images < 0:
    raise ValueError(f"--pgd-images={attack_images!r} must be an int >= 0 (0 = all test images)")
  if isinstance(test_images, bool) or not isinstance(test_images, int) or test_images < 0:
    raise ValueError(f"--test-images={test_images!r} must be an int >= 0 (0 = all test images)")
  return chosen


class LoadedRun(NamedTuple):
  """A trained run ready to evaluate: ``model`` is what :func:`model_apply` takes."""

  config: Any
  step: int
  mesh: Any
  split: restore.TestSplit
  fns: Any
  model: tuple


def load_model(workdir: str, checkpoint: str | int = "latest") -> LoadedRun:
  """The run's config, checkpoint ``checkpoint`` restored on a mesh of this process's
  devices, and its test split; ValueError when it cannot be (before anything compiles)."""
  config = restore.load_run_config(workdir)
  step = restore.resolve_checkpoint(config, workdir, checkpoint)
  restore.check_data_supported(config)
  mesh = sharding.make_mesh()
  split = restore.load_test_split(config, mesh)
  fns, params, model_state = restore.restore_model(config, workdir, step, split, mesh)
  stats = jax.device_put((split.mean, split.std), sharding.replicated(mesh))
  return LoadedRun(config, step, mesh, split, fns, (params, model_state, *stats))


def evaluate_workdir(
  workdir: str,
  *,
  checkpoint: str | int = "latest",
  suite: str | suites.Suite = "default",
  pgd_images: int = DEFAULT_ATTACK_IMAGES,
  corruptions: list[str] | None = None,
  eps: list[float] | None = None,
  pgd_steps: int | None = None,
  subset_seed: int = 0,
  test_images: int = 0,
) -> dict[str, Any]:
  """Evaluates a trained run's checkpoint and writes ``<workdir>/robustness.json``.

  Every argument is checked before anything is loaded or compiled.

  Args:
    workdir: a run directory written by ``hybridconv train``.
    checkpoint: ``'latest'``, ``'best'`` (highest eval accuracy among the kept
      checkpoints) or a saved step.
    suite: a name of :data:`suites.SUITES` or a :class:`suites.Suite`.
    pgd_images: size of the seeded attack subset for FGSM and PGD (0 = all).
    corruptions: run only these families of the suite (clean is always run).
    eps: replace the suite's attack budgets (each in [0, 1]).
    pgd_steps: replace the suite's PGD iteration count.
    subset_seed: seed of the subsets, the noise and PGD's random starts.
    test_images: size of the seeded subset for the clean and corrupted
      accuracies (0 = the whole test split); the attack subset is drawn from
      the same permutation, so it lies inside this one when it is smaller.

  Returns:
    the results, also written to ``robustness.json``::

      {"version": 1, "workdir": str, "checkpoint": requested, "step": int,
       "suite": str, "pgd_steps": int, "subset_seed": int,
       "num_test_images": int (clean and corrupted), "num_attack_images": int,
       "clean_accuracy": float,
       "entries": [{"family": str, "level": float, "accuracy": float,
                    "correct": int, "num_images": int}, ...],
       "summary": {family: mean accuracy over its levels},
       "units": {family: unit of its levels},
       "seconds": {family: wall seconds, "total": ...}}

    ``family`` is a name of :data:`suites.FAMILIES` (the registry); attack
    entries count the attack subset's images.

  Raises:
    ValueError: a bad argument, no (such) checkpoint, an unsupported dataset
      or a checkpoint that does not restore -- before any long computation.
  """
  start = time.perf_counter()
  workdir = os.path.abspath(workdir)
  chosen = check_request(
    suite,
    corruptions_=corruptions,
    eps=eps,
    attack_images=pgd_images,
    pgd_steps=pgd_steps,
    test_images=test_images,
  )
  config, step, mesh, split, fns, model = load_model(workdir, checkpoint)
  logging.info("robustness: %s step %d, suite %s", workdir, step, chosen.name)
  part = evaluate_suite(
    chosen,
    fns,
    model,
    split,
    batch_size=config.eval_batch_size,
    mesh=mesh,
    attack_images=pgd_images,
    subset_seed=subset_seed,
    test_images=test_images,
  )
  clean = next(e["accuracy"] for e in part["entries"] if e["family"] == suites.CLEAN)
  results = {
    "version": SCHEMA_VERSION,
    "workdir": workdir,
    "checkpoint": str(checkpoint),
    "step": step,
    "suite": chosen.name,
    "pgd_steps": chosen.pgd_steps,
    "subset_seed": subset_seed,
    "num_test_images": len(seeded_subset(len(split.labels), test_images, subset_seed)),
    "num_attack_images": len(seeded_subset(len(split.labels), pgd_images, subset_seed)),
    "clean_accuracy": clean,
    "entries": part["entries"],
    "summary": part["summary"],
    "units": {f: suites.UNITS[f] for f in part["summary"]},
    "seconds": {**part["seconds"], "total": round(time.perf_counter() - start, 3)},
  }
  if jax.process_index() == 0:
    write_results(workdir, results)
  return results


def write_results(workdir: str, results: dict[str, Any]) -> str:
  """Writes ``robustness.json`` atomically; returns its path."""
  path = os.path.join(workdir, ROBUSTNESS_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  os.replace(path + ".tmp", path)
  return path
