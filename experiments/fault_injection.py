r"""Fault injection, end to end: break real training runs and check what survives.

Every run is a ``python -m hybridconv.main`` subprocess on the tiny reliability
config (``configs/tiny.py``, 8 steps, evaluations at steps 4 and 8, checkpoints
at 4 and 8). A fault is injected -- by the ``HYBRIDCONV_FAULT`` test hook at a
random step or point, by an outside watcher at a random moment, or by damaging
files -- then the same command is run again in the same workdir. A run counts
as *recovered with nothing lost* when

* the resumed run ends with a train state bit-identical to an uninterrupted
  run's and the same final eval metrics, and
* it resumed from where the guarantee says: the signal's step after
  SIGTERM/SIGINT (no step redone), the newest committed checkpoint after a
  SIGKILL, the newest intact one after damage, the last checkpoint after a NaN
  stop;

for refusals (bad config, bad data, a config change on resume) when the run
exits with status 2, one ``error:`` line and no checkpoint, before compiling.

  python experiments/fault_injection.py            # 2 runs per scenario, 2 at a time
  python experiments/fault_injection.py --runs 5 --jobs 1 --json /tmp/faults.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import glob
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = ["--config=configs/tiny.py", "--config.eval_every=0.5epochs"]
TOTAL_STEPS = 8
SYNC = ("--config.checkpoint.async_save=False",)
_RESUMED = re.compile(r"resumed from checkpoint (\d+)")

# A driver for the tracking-outage scenario: the writer hook needs Python.
TRACKER_DRIVER = """
import sys, threading
from configs import tiny
from hybridconv.training import train
from hybridconv.tracking import writers
writers.CLOSE_TIMEOUT_S = 2.0
class Broken:
  def __init__(self, mode): self.mode, self.calls = mode, 0
  def write_scalars(self, step, scalars):
    self.calls += 1
    if self.calls > 1:
      if self.mode == "raise": raise ConnectionError("tracker down")
      threading.Event().wait()  # hangs for good
  def close(self):
    if self.mode == "hang": threading.Event().wait()
config = tiny.get_config()
config.eval_every = "0.5 epochs"
config.lock()
train.train_and_evaluate(config, sys.argv[1], writer=Broken(sys.argv[2]))
"""


@dataclasses.dataclass
class Outcome:
  ok: bool
  detail: str
  redone: int = 0  # train steps computed twice


def _env(fault: str = "") -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  env.pop("HYBRIDCONV_FAULT", None)
  if fault:
    env["HYBRIDCONV_FAULT"] = fault
  return env


def cli(
  workdir: str, *args: str, fault: str = "", kill_after: float | None = None
) -> subprocess.CompletedProcess:
  """Runs the command line; ``kill_after`` seconds: SIGKILL from outside (if still running)."""
  command = [sys.executable, "-m", "hybridconv.main", *CONFIG, f"--workdir={workdir}", *args]
  process = subprocess.Popen(
    command, cwd=ROOT, env=_env(fault), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  try:
    stdout, stderr = process.communicate(timeout=kill_after)
  except subprocess.TimeoutExpired:
    process.send_signal(signal.SIGKILL)
    stdout, stderr = process.communicate()
  return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def final_state(workdir: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  """Arrays of checkpoint 8 and the last eval event of ``metrics.jsonl``."""
  path = os.path.join(workdir, "checkpoints", str(TOTAL_STEPS), "state")
  restored = ocp.StandardCheckpointer().restore(path)
  arrays = {
    jax.tree_util.keystr(p): np.asarray(v)
    for p, v in jax.tree_util.tree_flatten_with_path(restored)[0]
  }
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    evals = [e for e in map(json.loads, f) if "eval/accuracy" in e]
  return arrays, {k: v for k, v in evals[-1].items() if k.startswith("eval/")}


def committed(workdir: str) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  return (
    sorted(int(n) for n in os.listdir(directory) if n.isdigit()) if os.path.isdir(directory) else []
  )


def _last_logged_step(workdir: str) -> int:
  """The highest step in ``metrics.jsonl`` (0 if nothing was logged)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    return 0
  with open(path, encoding="utf-8") as f:
    return max((json.loads(line)["step"] for line in f if line.strip()), default=0)


class Check:
  """Compares a finished workdir with the reference run."""

  def __init__(self, reference_dir: str):
    self.arrays, self.evals = final_state(reference_dir)

  def resume(self, workdir: str, expected_start: int, stopped_at: int, args=()) -> Outcome:
    """Runs the same command again; identical result, resumed from ``expected_start``?"""
    result = cli(workdir, *args)
    if result.returncode != 0:
      return Outcome(False, f"resume exit {result.returncode}: {result.stderr[-300:]}")
    found = _RESUMED.findall(result.stderr)
    start = int(found[-1]) if found else 0
    arrays, evals = final_state(workdir)
    same = (
      arrays.keys() == self.arrays.keys()
      and evals == self.evals
      and all(np.array_equal(arrays[k], v) for k, v in self.arrays.items())
    )
    redone = max(0, stopped_at - start)
    if not same:
      return Outcome(False, f"resumed from {start}: result differs", redone)
    if start != expected_start:
      return Outcome(False, f"resumed from {start}, expected {expected_start}", redone)
    return Outcome(True, f"resumed from {start}", redone)


# --------------------------------------------------------------------------- scenarios


def sigkill_hook(check, rng, workdir, point):
  """SIGKILL at a hook. Synchronous saves: checkpoint 4 is surely committed by step 5.

  (An asynchronous save of this tiny model commits in about a second, longer
  than the rest of the run, so a later kill would nearly always find none.)
  """
  step = rng.randint(1, TOTAL_STEPS - 1) if point == "step" else rng.choice([4, 8])
  killed = cli(workdir, *SYNC, fault=f"kill@{point}:{step}")
  if killed.returncode != -signal.SIGKILL:
    return Outcome(False, f"kill@{point}:{step} exit {killed.returncode}")
  expected = 4 if step > 4 or (point == "eval" and step == 8) else 0
  outcome = check.resume(workdir, expected, step, SYNC)
  outcome.detail = f"kill@{point}:{step}: {outcome.detail}"
  return outcome


def sigkill_watcher(check, rng, workdir):
  """An outside SIGKILL, a random moment after the run logged its k-th event (k random)."""
  command = [sys.executable, "-m", "hybridconv.main", *CONFIG, f"--workdir={workdir}"]
  process = subprocess.Popen(
    command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  events, delay = rng.randint(1, 5), rng.uniform(0.0, 0.05)
  path = os.path.join(workdir, "metrics.jsonl")
  while process.poll() is None:
    if os.path.isfile(path) and sum(1 for _ in open(path, encoding="utf-8")) >= events:
      time.sleep(delay)
      process.send_signal(signal.SIGKILL)
      break
    time.sleep(0.002)
  process.wait()
  start = max(committed(workdir), default=0)  # asynchronous saves: whatever was committed
  if process.returncode == 0:
    return check.resume(workdir, TOTAL_STEPS, TOTAL_STEPS)  # finished before the kill
  reached = _last_logged_step(workdir)
  outcome = check.resume(workdir, start, reached)
  outcome.detail = f"killed after logged step {reached}; {outcome.detail}"
  return outcome


def sigkill_save(check, rng, workdir):
  step = rng.choice([4, 8])
  killed = cli(workdir, fault=f"kill@save:{step}")
  leftovers = glob.glob(os.path.join(workdir, "checkpoints", f"{step}.orbax-checkpoint-tmp*"))
  if killed.returncode != -signal.SIGKILL or not leftovers or step in committed(workdir):
    return Outcome(False, f"kill@save:{step}: exit {killed.returncode}, tmp {leftovers}")
  outcome = check.resume(workdir, max(committed(workdir), default=0), step)
  if glob.glob(os.path.join(workdir, "checkpoints", "*.orbax-checkpoint-tmp*")):
    return Outcome(False, "half-written checkpoint not cleaned up", outcome.redone)
  return outcome


def signal_hook(check, rng, workdir, fault, expected_stop):
  stopped = cli(workdir, fault=fault)
  name = "SIGINT" if fault.startswith("sigint") else "SIGTERM"
  code = 128 + signal.Signals[name].value
  message = f"stopped by {name} at step {expected_stop} after saving a checkpoint"
  if stopped.returncode != code or message not in stopped.stderr:
    return Outcome(False, f"{fault}: exit {stopped.returncode}, {stopped.stderr[-300:]}")
  return check.resume(workdir, expected_stop, expected_stop)


def signal_scenario(kind):
  def run(check, rng, workdir):
    if kind == "step":
      step = rng.randint(1, TOTAL_STEPS - 1)
      return signal_hook(
        check, rng, workdir, f"{rng.choice(['sigterm', 'sigint'])}@step:{step}", step
      )
    if kind == "compile":
      return signal_hook(check, rng, workdir, "sigterm@compile", 1)
    step = rng.choice([2, 4, 6]) if kind == "log" else 4
    return signal_hook(check, rng, workdir, f"sigterm@{kind}:{step}", step)

  return run


def damaged_checkpoint(reference_dir):
  def run(check, rng, workdir):
    os.rmdir(workdir)
    shutil.copytree(reference_dir, workdir)
    state = os.path.join(workdir, "checkpoints", "8", "state")
    largest = max(
      glob.glob(os.path.join(state, "**", "d", "*"), recursive=True), key=os.path.getsize
    )
    kind = rng.choice(["truncate", "flip-bit", "delete-metadata", "garble-json"])
    if kind == "truncate":
      os.truncate(largest, os.path.getsize(largest) // 2)
    elif kind == "flip-bit":
      with open(largest, "r+b") as f:
        f.seek(rng.randrange(os.path.getsize(largest)))
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ (1 << rng.randrange(8))]))
    elif kind == "delete-metadata":
      os.remove(os.path.join(state, "_METADATA"))
    else:
      with open(os.path.join(workdir, "checkpoints", "8", "metadata", "metadata"), "w") as f:
        f.write('{"step": 8, "fingerp')
    outcome = check.resume(workdir, 4, TOTAL_STEPS)
    outcome.detail = f"{kind}: {outcome.detail}"
    if not os.path.isdir(os.path.join(workdir, "checkpoints.corrupt", "8")):
      return Outcome(False, f"{kind}: damaged checkpoint not moved aside", outcome.redone)
    return outcome

  return run


def nan_stop(check, rng, workdir):
  step = rng.randint(1, TOTAL_STEPS - 1)
  stopped = cli(workdir, fault=f"nan@step:{step}")
  if stopped.returncode != 3 or f"non-finite training at step {step}: the loss is nan" not in (
    stopped.stderr
  ):
    return Outcome(False, f"nan@step:{step}: exit {stopped.returncode}")
  return check.resume(workdir, max(committed(workdir), default=0), step)


def tracker_outage(check, rng, workdir):
  mode = rng.choice(["raise", "hang"])
  start = time.perf_counter()
  result = subprocess.run(
    [sys.executable, "-c", TRACKER_DRIVER, workdir, mode],
    cwd=ROOT,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  seconds = time.perf_counter() - start
  if result.returncode != 0:
    return Outcome(False, f"{mode}: exit {result.returncode}: {result.stderr[-300:]}")
  arrays, evals = final_state(workdir)
  same = evals == check.evals and all(np.array_equal(arrays[k], v) for k, v in check.arrays.items())
  return Outcome(
    same, f"{mode}: finished in {seconds:.0f} s, {'identical' if same else 'DIFFERENT'}"
  )


BAD_CONFIGS = [
  ["--config.model.first_layer=gabbor"],
  ["--config.model.first_layer=fixed:nosuch"],
  ["--config.data.gratings.image_size=4"],
  ["--config.model.name=alexnet"],
  ["--config.data.source=tfds", "--config.data.name=no_such_dataset"],
  ["--config.nan_policy=ignore"],
  ["--config.batch_size=0"],
]


def _refused(result, workdir: str | None) -> Outcome:
  """Exit 2 with one ``error:`` line and (for a fresh ``workdir``) no checkpoint written."""
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  ok = (
    result.returncode == 2
    and len(errors) == 1
    and "Traceback" not in result.stderr
    and not (workdir and committed(workdir))
  )
  return Outcome(ok, (errors or [f"exit {result.returncode}"])[0][:140])


def bad_config(check, rng, workdir):
  del check
  return _refused(cli(workdir, *rng.choice(BAD_CONFIGS)), workdir)


def bad_data(check, rng, workdir):
  del check
  directory = os.path.join(workdir, "idx")
  os.makedirs(directory)
  source = "/usr/share/datasets/fashion-mnist"
  for name in os.listdir(source):
    shutil.copy(os.path.join(source, name), directory)
  kind = rng.choice(["truncated", "damaged-gzip", "swapped"])
  images = os.path.join(directory, "t10k-images-idx3-ubyte.gz")
  labels = os.path.join(directory, "t10k-labels-idx1-ubyte.gz")
  if kind == "truncated":
    raw = gzip.decompress(open(images, "rb").read())
    with gzip.open(images, "wb") as f:
      f.write(raw[: len(raw) - rng.randint(1, 10_000)])
  elif kind == "damaged-gzip":
    raw = bytearray(open(labels, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(labels, "wb").write(bytes(raw))
  else:
    os.replace(images, images + ".tmp")
    os.replace(labels, images)
    os.replace(images + ".tmp", labels)
  result = cli(
    os.path.join(workdir, "run"),
    "--config.data.source=idx",
    "--config.data.name=fashion_mnist",
    f"--config.data.data_dir={directory}",
  )
  outcome = _refused(result, os.path.join(workdir, "run"))
  outcome.detail = f"{kind}: {outcome.detail}"
  return outcome


def config_change(reference_dir):
  def run(check, rng, workdir):
    del check
    os.rmdir(workdir)
    shutil.copytree(reference_dir, workdir)
    change = rng.choice(
      [
        "--config.model.width=0.5",
        "--config.seed=3",
        "--config.optim.name=sgd",
        "--config.data.gratings.num_classes=8",
      ]
    )
    before = committed(workdir)
    outcome = _refused(cli(workdir, change), None)
    if committed(workdir) != before:
      return Outcome(False, "checkpoints changed")
    return outcome

  return run


def scenarios(reference_dir):
  return {
    "SIGKILL at a random step": lambda c, r, w: sigkill_hook(c, r, w, "step"),
    "SIGKILL from outside, random moment": sigkill_watcher,
    "SIGKILL during evaluation": lambda c, r, w: sigkill_hook(c, r, w, "eval"),
    "SIGKILL during a checkpoint write": sigkill_save,
    "SIGTERM/SIGINT at a random step": signal_scenario("step"),
    "SIGTERM during compilation": signal_scenario("compile"),
    "SIGTERM during evaluation": signal_scenario("eval"),
    "SIGTERM during logging": signal_scenario("log"),
    "damaged latest checkpoint": damaged_checkpoint(reference_dir),
    "NaN loss (stop), then resume": nan_stop,
    "tracker raises or hangs": tracker_outage,
    "bad config (refused)": bad_config,
    "bad data file (refused)": bad_data,
    "model change on resume (refused)": config_change(reference_dir),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--runs", type=int, default=2, help="runs per scenario")
  parser.add_argument("--jobs", type=int, default=2, help="runs at the same time")
  parser.add_argument("--seed", type=int, default=0, help="seed of the random fault points")
  parser.add_argument("--only", default="", help="run only scenarios containing this text")
  parser.add_argument("--json", default="", help="also write every run's outcome here")
  args = parser.parse_args()
  root = tempfile.mkdtemp(prefix="fault_injection_")
  start = time.perf_counter()
  reference_dir = os.path.join(root, "reference")
  result = cli(reference_dir)
  if result.returncode != 0:
    sys.exit(f"the reference run failed:\n{result.stderr[-2000:]}")
  check = Check(reference_dir)
  chosen = {k: v for k, v in scenarios(reference_dir).items() if args.only in k}
  jobs = []
  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    for s_index, (name, scenario) in enumerate(chosen.items()):
      for run in range(args.runs):
        workdir = os.path.join(root, f"s{s_index}_r{run}")
        os.makedirs(workdir)
        rng = random.Random(f"{args.seed}/{name}/{run}")
        jobs.append((name, run, pool.submit(scenario, check, rng, workdir)))
    outcomes = []
    for name, run, future in jobs:
      try:
        outcome = future.result()
      except Exception as error:  # noqa: BLE001 (a crashed scenario is a failed run)
        outcome = Outcome(False, f"{type(error).__name__}: {error}")
      outcomes.append((name, run, outcome))
      print(f"  {name} #{run}: {'ok' if outcome.ok else 'FAILED'} -- {outcome.detail}", flush=True)
  width = max(len(n) for n in chosen)
  print(f"\n{'scenario':<{width}}  runs  recovered, nothing lost  steps redone")
  for name in chosen:
    mine = [o for n, _, o in outcomes if n == name]
    redone = sum(o.redone for o in mine)
    print(f"{name:<{width}}  {len(mine):>4}  {sum(o.ok for o in mine):>23}  {redone:>12}")
  print(
    f"\n{len(outcomes)} runs in {time.perf_counter() - start:.0f} s "
    f"(seed {args.seed}; workdirs in {root})"
  )
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(
        [{"scenario": n, "run": r, **dataclasses.asdict(o)} for n, r, o in outcomes], f, indent=1
      )
  if not all(o.ok for _, _, o in outcomes):
    sys.exit(1)


if __name__ == "__main__":
  main()
