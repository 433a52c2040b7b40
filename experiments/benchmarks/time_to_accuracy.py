"""Wall-clock time to a target Fashion-MNIST test accuracy: hybridconv's trainer against PyTorch.

The throughput benchmark (``train_throughput.py``) times one train step; this
times what a user waits for: from the start of training to the first
evaluation at or above ``--target`` (default 0.92) test accuracy, with
everything a real run does on the way -- reading the data, building the model,
compiling (JAX) or autotuning (cuDNN), every step, every evaluation.

* hybridconv: ``train.train_and_evaluate`` itself, on ``configs/fashion_mnist.py``
  with ``--variant`` (``hybrid``; ``hybrid,long``; ``free,resnet20`` ...), in a
  fresh temporary workdir, with checkpoints only at the end, W&B and filter
  tracking off, ``eval_every = --eval-every`` epochs and ``train_for =
  --max-epochs`` epochs. The eval accuracies are read back from the workdir's
  ``metrics.jsonl``; their wall times come from a metric writer passed to
  ``train_and_evaluate`` that stamps ``time.perf_counter()`` when each eval
  event arrives (``metrics.jsonl`` has no clock field). That writer runs on
  hybridconv's ``BackgroundWriter`` thread, which takes an event off its queue
  as soon as the training thread lets go of the GIL (CPython's switch
  interval is 5 ms; the training thread also releases it while it waits on
  the device), so the stamps lag the real eval end by milliseconds
  (``tests/benchmarks_time_to_accuracy_test.py`` checks < 0.25 s).
* PyTorch: ``torch_time_to_accuracy.py`` in a subprocess of the PyTorch
  interpreter, the ``torch_train.py`` model with the same data, normalisation,
  batch size, optimiser, schedule, augmentation, label smoothing and eval
  cadence (its docstring lists what is mirrored and what is not).

Both clocks start after the framework is imported and its device runtime is
up, and stop at the eval event. The two sides run one after the other, never
interleaved (each is one long measurement): PyTorch first, then hybridconv,
because JAX takes 75% of GPU memory when it first touches the GPU and keeps it
until its process exits, while the PyTorch subprocess returns everything when
it ends (``--order jax-first`` swaps them). The ratio printed is PyTorch time /
hybridconv time: > 1 means hybridconv reached the target sooner.

On this CPU machine (torch in its own interpreter, ``make bench-setup``)::

    .venv/bin/python experiments/benchmarks/time_to_accuracy.py --target 0.85 \\
        --max-epochs 1 --eval-every 0.5

On a CPU shared with other jobs, PyTorch's two OpenMP threads stall far more
than XLA's thread pool (a SimpleCNN step took 0.6 s with 2 threads and 0.09 s
with 1 while another training run used one of the two cores), which decides the
CPU ratio; ``--torch-threads 1`` shows how much.

On a GPU machine (jax[cuda] and torch with CUDA in one Python; ``--torch-python``
falls back to ``sys.executable`` when there is no ``.venv-torch`` and torch
imports)::

    python experiments/benchmarks/time_to_accuracy.py --variant hybrid,long \\
        --eval-every 1 --json runs/tta_simplecnn.json
    python experiments/benchmarks/time_to_accuracy.py --variant hybrid,resnet20,long \\
        --target 0.94 --eval-every 1 --stop-at-target --json runs/tta_resnet20.json

The default ``hybrid`` variant is the 3-epoch quickstart, which ends near
91.9% on CPU, so 0.92 needs ``long`` (20 epochs; 92.3% at epoch 12 on CPU) or
more ``--max-epochs`` (which also stretches the cosine schedule). CPU results
only check that the script works: the comparison this exists for is on a GPU,
where a step takes milliseconds and compilation, dispatch and input pipeline
decide who is faster.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping

import jax

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from configs import fashion_mnist  # noqa: E402
from hybridconv import host_memory, sharding, tracking  # noqa: E402
from hybridconv.data import idx  # noqa: E402
from hybridconv.training import preemption, train  # noqa: E402
from hybridconv.training import workdir as workdir_lib  # noqa: E402
from hybridconv.training.durations import spell  # noqa: E402

TORCH_SCRIPT = pathlib.Path(__file__).with_name("torch_time_to_accuracy.py")
DEFAULT_TORCH_VENV = ROOT / ".venv-torch" / "bin" / "python"
TORCH_MODELS = ("simple_cnn", "resnet20")


# ---------------------------------------------------------------------------
# hybridconv side


def build_config(
  variant: str = "hybrid",
  *,
  eval_every: float = 1.0,
  max_epochs: float | None = None,
  seed: int = 0,
  data_dir: str = "",
):
  """``configs/fashion_mnist.py:<variant>`` set up for timing, locked.

  Checkpoints only at the end (one async save after the last evaluation, so
  never inside a measured interval), no W&B, no filter summaries or GIFs:
  the run is the trainer's training and evaluation, not its bookkeeping.
  """
  config = fashion_mnist.get_config(variant)
  if max_epochs is not None:
    config.train_for = spell(max_epochs, "epochs")
  config.seed = seed
  config.eval_every = spell(eval_every, "epochs")
  config.data.data_dir = data_dir
  config.checkpoint.every = "100%"
  config.checkpoint.every_minutes = 0.0
  config.checkpoint.keep = 1
  config.checkpoint.keep_best = 0
  config.tracking.wandb.mode = "disabled"
  config.tracking.filters_every = "never"
  config.tracking.gabor_fit = False
  config.tracking.animation = False
  config.tracking.log_checkpoints = False
  config.lock()
  return config


class EvalClock:
  """Metric writer that stamps ``perf_counter() - start`` on every eval event it receives.

  With ``stop_target`` it also sends this process SIGTERM at the first
  accuracy >= the target: hybridconv's preemption handling then stops the
  run at the next step boundary (after a checkpoint save, outside the measured
  interval) with :class:`preemption.Preempted`.
  """

  def __init__(self, start: float, stop_target: float | None = None):
    self.start = start
    self.stop_target = stop_target
    self.events: list[dict] = []
    self.stop_sent = False
    self.thread: str | None = None

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if "eval/accuracy" not in scalars:
      return
    seconds = time.perf_counter() - self.start
    self.thread = threading.current_thread().name
    accuracy = float(scalars["eval/accuracy"])
    self.events.append({"step": int(step), "seconds": seconds, "accuracy": accuracy})
    print(
      f"hybridconv: step {step} {seconds:.1f} s accuracy {accuracy:.4f}",
      file=sys.stderr,
      flush=True,
    )
    if self.stop_target is not None and accuracy >= self.stop_target and not self.stop_sent:
      self.stop_sent = True
      os.kill(os.getpid(), signal.SIGTERM)

  def close(self) -> None:
    pass


def first_crossing(evals: list[dict], target: float) -> dict | None:
  """The first evaluation (in order) with ``accuracy >= target``, or None."""
  return next((e for e in evals if e["accuracy"] >= target), None)


def eval_events(metrics: list[dict], clock: list[dict]) -> list[dict]:
  """metrics.jsonl's eval events with their epoch and the clock's wall time, in order.

  ``metrics.jsonl`` is the record of what was evaluated; the clock only adds
  the time. Both must list the same steps and accuracies, else the join is
  refused (a dropped or delayed event would give a wrong time).
  """
  epochs = {e["step"]: e["epoch"] for e in metrics if "epoch" in e}
  evals = [
    {"step": e["step"], "epoch": epochs.get(e["step"]), "accuracy": e["eval/accuracy"]}
    for e in metrics
    if "eval/accuracy" in e
  ]
  if [(e["step"], e["accuracy"]) for e in evals] != [(c["step"], c["accuracy"]) for c in clock]:
    raise RuntimeError(f"metrics.jsonl eval events {evals} do not match the clock's {clock}")
  return [e | {"seconds": c["seconds"]} for e, c in zip(evals, clock, strict=True)]


def run_jax(config, *, target: float, stop_at_target: bool = False) -> dict:
  """Runs ``train_and_evaluate(config)`` in a fresh workdir; times to every eval and the target.

  Nothing before this touches a JAX device (imports do not), so with the
  default order the PyTorch subprocess has had the GPU to itself.
  """
  device = jax.devices()[0]  # the backend starts here, before the clock
  workdir = tempfile.mkdtemp(prefix="time_to_accuracy_")  # fresh: nothing to resume
  stopped = False
  clock = EvalClock(time.perf_counter(), target if stop_at_target else None)
  start = clock.start
  try:
    train.train_and_evaluate(config, workdir, writer=clock)
  except preemption.Preempted:
    if not clock.stop_sent:
      raise
    stopped = True
  total = time.perf_counter() - start
  try:
    evals = eval_events(tracking.read_events(workdir), clock.events)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  hit = first_crossing(evals, target)
  return {
    "framework": "hybridconv",
    "version": f"jax {jax.__version__}",
    "device": device.platform if device.platform == "cpu" else device.device_kind,
    "target": target,
    "seconds_to_target": hit["seconds"] if hit else None,
    "epochs_to_target": hit["epoch"] if hit else None,
    "step_to_target": hit["step"] if hit else None,
    "final_accuracy": evals[-1]["accuracy"],
    "total_seconds": total,
    "stopped_at_target": stopped,
    "clock_thread": clock.thread,
    "evals": evals,
  }


# ---------------------------------------------------------------------------
# PyTorch side


def torch_spec(
  config,
  *,
  num_train: int,
  target: float,
  stop_at_target: bool,
  init: str,
  num_threads: int = 0,
) -> dict:
  """What ``torch_time_to_accuracy.py`` needs of the config; refuses what it cannot mirror.

  Every duration goes over in steps of a run on ``num_train`` training images,
  converted here by hybridconv's own rules, so the peer counts what the loop counts.
  """
  model = config.model
  unsupported = {
    "model.name": model.name not in TORCH_MODELS,
    "model.kernels": len(model.kernels) > 0,
    "model.width": model.width != 1.0,
    "compute_dtype": config.compute_dtype != "float32",
    "data.source": config.data.source != "idx",
  }
  bad = [key for key, is_bad in unsupported.items() if is_bad]
  if bad:
    raise ValueError(
      f"the PyTorch peer cannot mirror {', '.join(bad)} of this config; it "
      f"knows {TORCH_MODELS} with a chosen first layer, float32, IDX data"
    )
  clock = train.run_clock(config, num_train // config.batch_size)
  return {
    "model": model.name,
    "source": model.first_layer,
    "seed": config.seed,
    "num_classes": idx.NUM_CLASSES[config.data.name],
    "data_dir": str(idx.idx_data_dir(config.data.name, config.data.data_dir)),
    "batch_size": config.batch_size,
    "eval_batch_size": config.eval_batch_size,
    "total_steps": clock.total_steps,
    "eval_every_steps": clock.every(config.eval_every, "eval_every"),
    "warmup_steps": clock.at(config.optim.warmup, "optim.warmup"),
    "step_boundaries": [clock.at(when, "optim.step_at") for when in config.optim.step_at],
    "label_smoothing": config.label_smoothing,
    "crop_padding": config.data.augment.crop_padding,
    "horizontal_flip": config.data.augment.horizontal_flip,
    "optim": workdir_lib.config_json(config.optim),
    "target": target,
    "stop_at_target": stop_at_target,
    "init": init,
    "num_threads": num_threads,
  }


def resolve_torch_python(explicit: pathlib.Path | None) -> pathlib.Path | None:
  """``--torch-python``, else ``.venv-torch``, else this interpreter if torch imports here."""
  if explicit is not None:
    return explicit
  if DEFAULT_TORCH_VENV.exists():
    return DEFAULT_TORCH_VENV
  if importlib.util.find_spec("torch") is not None:
    return pathlib.Path(sys.executable)
  return None


def run_torch(python: pathlib.Path, spec: dict) -> dict:
  """The PyTorch run in its own process; its progress goes to our stderr."""
  completed = subprocess.run(
    [str(python), str(TORCH_SCRIPT), "--spec", json.dumps(spec)],
    stdout=subprocess.PIPE,
    text=True,
    check=False,
  )
  lines = completed.stdout.strip().splitlines()
  if completed.returncode != 0 or not lines:
    raise RuntimeError(f"the PyTorch run failed (exit {completed.returncode}); see above")
  return json.loads(lines[-1])


# ---------------------------------------------------------------------------
# Report


def ratio(results: dict) -> float | None:
  """PyTorch seconds to target / hybridconv seconds to target (> 1: hybridconv faster)."""
  jax_s = results.get("hybridconv", {}).get("seconds_to_target")
  torch_s = results.get("pytorch", {}).get("seconds_to_target")
  return torch_s / jax_s if jax_s and torch_s else None


def format_table(results: dict, target: float) -> str:
  def cell(value, spec):
    return "not reached" if value is None else format(value, spec)

  lines = [
    f"time to {target:.2%} Fashion-MNIST test accuracy",
    f"{'framework':<11} {'device':<26} {'s to target':>12} {'epochs':>12} "
    f"{'final acc':>9} {'run s':>8}",
  ]
  for name, r in results.items():
    lines.append(
      f"{name:<11} {r['device'][:26]:<26} {cell(r['seconds_to_target'], '.1f'):>12} "
      f"{cell(r['epochs_to_target'], '.2f'):>12} {r['final_accuracy']:>9.4f} "
      f"{r['total_seconds']:>8.1f}"
    )
  value = ratio(results)
  lines.append(
    "PyTorch time / hybridconv time: "
    + (
      f"{value:.2f} ({'hybridconv' if value > 1 else 'PyTorch'} faster)"
      if value is not None
      else "n/a (a side did not run or did not reach the target)"
    )
  )
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--variant",
    default="hybrid",
    help="configs/fashion_mnist.py variant, e.g. hybrid,long or free,resnet20",
  )
  parser.add_argument("--target", type=float, default=0.92, help="test accuracy to reach")
  parser.add_argument("--eval-every", type=float, default=1.0, help="epochs between evaluations")
  parser.add_argument("--max-epochs", type=float, help="training length (default: the config's)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data-dir", default="", help="IDX directory (default: hybridconv's)")
  parser.add_argument(
    "--stop-at-target",
    action="store_true",
    help="end each run at its first eval >= target (saves device time)",
  )
  parser.add_argument(
    "--torch-python",
    type=pathlib.Path,
    help="interpreter with torch (default: .venv-torch, else this one)",
  )
  parser.add_argument(
    "--torch-init",
    choices=("hybridconv", "pytorch"),
    default="hybridconv",
    help="initialise the PyTorch model as hybridconv does, or PyTorch's way",
  )
  parser.add_argument(
    "--torch-threads",
    type=int,
    default=0,
    help="PyTorch intra-op threads (0: its default, one per core)",
  )
  parser.add_argument("--order", choices=("torch-first", "jax-first"), default="torch-first")
  parser.add_argument("--json", type=pathlib.Path, help="write config, spec and results here")
  args = parser.parse_args()

  config = build_config(
    args.variant,
    eval_every=args.eval_every,
    max_epochs=args.max_epochs,
    seed=args.seed,
    data_dir=args.data_dir,
  )
  if config.keep_host_buffers:  # the host and device set-up of `hybridconv.main`
    host_memory.keep_large_buffers_in_heap()
  sharding.configure_cpu_devices(config)
  directory = idx.idx_data_dir(config.data.name, config.data.data_dir)
  _, train_labels = idx.read_idx_split(directory, "train", idx.NUM_CLASSES[config.data.name])
  spec = torch_spec(
    config,
    num_train=len(train_labels),
    target=args.target,
    stop_at_target=args.stop_at_target,
    init=args.torch_init,
    num_threads=args.torch_threads,
  )
  if config.model.first_layer == "fixed":
    print(
      "note: torch_train's 'fixed' first layer is a frozen random bank, hybridconv's a Gabor bank",
      file=sys.stderr,
    )
  torch_python = resolve_torch_python(args.torch_python)
  if torch_python is None:
    print(
      "note: no interpreter with torch (make bench-setup), PyTorch side skipped", file=sys.stderr
    )

  def run_side(name):
    if name == "pytorch":
      if torch_python is not None:
        results["pytorch"] = run_torch(torch_python, spec)
    else:
      results["hybridconv"] = run_jax(
        config, target=args.target, stop_at_target=args.stop_at_target
      )

  results: dict[str, dict] = {}
  order = ("pytorch", "hybridconv") if args.order == "torch-first" else ("hybridconv", "pytorch")
  for name in order:
    run_side(name)
  results = {name: results[name] for name in ("hybridconv", "pytorch") if name in results}
  print()
  print(format_table(results, args.target))
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
      json.dumps(
        {
          "args": {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()},
          "config": workdir_lib.config_json(config),
          "torch_spec": spec,
          "results": results,
          "ratio_pytorch_over_hybridconv": ratio(results),
        },
        indent=1,
      )
    )


if __name__ == "__main__":
  main()
