"""``hybridconv study --executor=slurm`` and multi-host runs against a real one-node SLURM cluster.

The cluster (``tests/slurm_cluster.py``) is Debian's slurm-wlm and munge started from a generated
config for this module and stopped after it; where it cannot start (not root, packages missing)
the cluster tests skip and say why. Every command runs as a user would type it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import slurm_cluster

from hybridconv import run_layout
from hybridconv.studies import slurm
from hybridconv.training import preemption

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=configs/tiny.py", "--config.cpu_devices=1"]
FOUR_POINTS = ["--grid", "model.first_layer=free,gabor", "--grid", "seed=0,1"]
ROBUSTNESS = [
  "--config.robustness.after_training=True",
  "--config.robustness.pgd_images=16",
  "--config.robustness.test_images=32",
]
# Keys of a run's records that measure time, not training.
TIMING = re.compile(r"seconds|per_sec|time")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  reason = slurm_cluster.unavailable()
  if reason:
    pytest.skip(reason)
  running = slurm_cluster.Cluster(str(tmp_path_factory.mktemp("slurm"))).start()
  yield running
  running.stop()


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
  # XLA_FLAGS stays (the suite's optimisation level, tests/conftest.py): the SLURM tasks and
  # the local reference must compile alike for their records to be equal.
  env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
  return {**env, "WANDB_MODE": "disabled", **(extra or {})}


def _study(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "hybridconv.cli", "study", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    env=env,
  )


def _job_id(submitted: subprocess.CompletedProcess) -> str:
  assert submitted.returncode == 0, submitted.stderr[-3000:]
  match = re.search(r"as SLURM job (\d+)", submitted.stdout)
  assert match, submitted.stdout
  return match.group(1)


def _records(workdir: str) -> dict:
  """A point's training records without their timings: metrics, summary, robustness, files."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    metrics = [{k: v for k, v in json.loads(line).items() if not TIMING.search(k)} for line in f]
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = {k: v for k, v in json.load(f).items() if not TIMING.search(k)}
  robustness = None
  if os.path.exists(os.path.join(workdir, "robustness.json")):
    with open(os.path.join(workdir, "robustness.json"), encoding="utf-8") as f:
      robustness = json.load(f)["summary"]
  return {
    "metrics": metrics,
    "summary": summary,
    "robustness": robustness,
    "files": sorted(os.listdir(workdir)),
  }


def _points(root: str) -> list[str]:
  return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "config.json")))


def _starts(workdir: str) -> int:
  with open(os.path.join(workdir, "run_info.json"), encoding="utf-8") as f:
    return len(json.load(f)["starts"])


@pytest.mark.slow
def test_a_slurm_study_writes_the_records_of_the_local_runner(cluster, tmp_path):
  slurm_root, local_root = str(tmp_path / "slurm"), str(tmp_path / "local")
  common = [*TINY, *FOUR_POINTS]
  submitted = _study(
    *common,
    f"--workdir={slurm_root}",
    "--executor=slurm",
    f"--slurm_partition={slurm_cluster.PARTITION}",
    "--slurm_cpus_per_task=1",
    "--slurm_time=10",
    env=_environment(cluster.env),
  )
  job = _job_id(submitted)  # returns at once, while the tasks run next to the local study
  assert "submitted 4 of 4 points" in submitted.stdout
  assert f"{slurm_root}/slurm/{job}_<task>_0_log.out" in submitted.stdout
  local = _study(*common, f"--workdir={local_root}", env=_environment())
  assert local.returncode == 0, local.stderr[-3000:]
  cluster.wait_idle()

  assert _points(slurm_root) == _points(local_root) and len(_points(local_root)) == 4
  for name in _points(local_root):
    ours, theirs = (_records(os.path.join(r, name)) for r in (slurm_root, local_root))
    assert ours == theirs, name
  status = _study(f"--workdir={slurm_root}", "--status", env=_environment(cluster.env))
  assert status.returncode == 0, status.stderr
  assert "4 of 4 points finished, 0 queued or running" in status.stdout
  again = _study(*common, f"--workdir={slurm_root}", "--executor=slurm", env=cluster.env)
  assert again.returncode == 0, again.stderr
  assert "nothing to submit" in again.stdout and "4 finished" in again.stdout
  assert not cluster.queue()


def _wait_for_step(workdir: str, step: int, timeout: float = 180.0) -> None:
  deadline = time.time() + timeout
  path = os.path.join(workdir, "metrics.jsonl")
  while time.time() < deadline:
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        if any(json.loads(line)["step"] >= step for line in f if line.strip()):
          return
    time.sleep(0.2)
  raise TimeoutError(f"{workdir} did not reach step {step}")


def _wait_for_state(cluster, task: str, states: tuple[str, ...], timeout: float = 60.0) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline:
    if cluster.queue().get(task, "GONE") in states:
      return
    time.sleep(0.2)
  raise TimeoutError(f"task {task} never reached {states}: {cluster.queue()}")


@pytest.mark.slow
def test_stopped_points_resume_requeued_or_resubmitted(cluster, tmp_path):
  """Task 0 gets SLURM's warning signal (SIGUSR2): it saves a checkpoint and requeues itself.
  Task 1 is cancelled (SIGTERM): it saves a checkpoint, and a resubmission queues it alone.
  Each task evaluates its point's robustness once it has finished."""
  root = str(tmp_path / "study")
  command = [
    *TINY,
    "--grid",
    "seed=0,1",
    "model.first_layer=free",  # of the config file's study() crossed with the seeds: 2 points
    "--config.train_for=400 steps",
    "--config.log_every=50 steps",
    "--config.eval_every=50%",
    *ROBUSTNESS,
    f"--workdir={root}",
    "--executor=slurm",
    "--slurm_time=10",
  ]
  job = _job_id(_study(*command, env=_environment(cluster.env)))
  seed0, seed1 = (os.path.join(root, f"first_layer=free,seed={s}") for s in (0, 1))
  _wait_for_step(seed0, 100)
  _wait_for_step(seed1, 100)
  cluster.client("scancel", "--signal=USR2", f"{job}_0")
  cluster.client("scancel", f"{job}_1")
  _wait_for_state(cluster, f"{job}_0", ("PENDING",))  # requeued; SLURM holds it 2 minutes:
  cluster.client("scontrol", "update", f"JobId={job}_0", "StartTime=now")  # start it now
  _wait_for_state(cluster, f"{job}_1", ("GONE",))

  again = _study(*command, env=_environment(cluster.env))
  second = _job_id(again)
  assert "submitted 1 of 2 points" in again.stdout, again.stdout
  with open(os.path.join(root, "slurm", "submissions.jsonl"), encoding="utf-8") as f:
    assert json.loads(f.readlines()[-1])["points"] == ["first_layer=free,seed=1"]
  cluster.wait_idle()

  for workdir in (seed0, seed1):
    with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
      assert json.load(f)["step"] == 400
    assert _starts(workdir) == 2  # resumed, not restarted: one run, two starts
    with open(os.path.join(workdir, run_layout.TIMES_FILE), encoding="utf-8") as f:
      exits = [attempt["exit"] for attempt in json.load(f)["train"]]
    stop = signal.SIGUSR2 if workdir == seed0 else signal.SIGTERM
    assert exits == [128 + stop.value, 0], workdir
    assert _records(workdir)["robustness"], workdir  # evaluated inside the array task
  with open(os.path.join(root, "slurm", f"{job}_0_0_log.out"), encoding="utf-8") as f:
    assert f"requeued task {job}_0" in f.read()
  with open(os.path.join(root, "slurm", f"{second}_0_log.err"), encoding="utf-8") as f:
    assert "error" not in f.read().lower()


def _docs_script(title: str) -> str:
  """The sbatch script of a docs/cluster.md section (a ```sh block: a file, not commands)."""
  with open(os.path.join(ROOT, "docs", "cluster.md"), encoding="utf-8") as f:
    section = f.read().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```sh\n(.*?)```", section, flags=re.S)[0]


SGD = [
  "--config.optim.name=sgd",
  "--config.optim.learning_rate=0.05",
  "--config.train_for=3 steps",
]


@pytest.mark.slow
def test_the_documented_multi_host_script_over_two_tasks_equals_one_process(cluster, tmp_path):
  """docs/cluster.md's sbatch script, with 2 tasks on this node instead of N nodes with GPUs:
  jax.distributed starts from SLURM's environment, and the run equals a one-process run."""
  script = tmp_path / "multihost.sbatch"
  lines = _docs_script("One run over N nodes").splitlines()
  script.write_text("\n".join(line for line in lines if "--gpus-per-node" not in line) + "\n")
  two, one = tmp_path / "two", tmp_path / "one"
  env = _environment({**cluster.env, "CONFIG": "configs/tiny.py", "WORKDIR": str(two)})
  submitted = subprocess.run(
    ["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1"]
    + ["--time=10", f"--output={tmp_path}/multihost.out", str(script), *SGD],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=60,
    check=True,
  )
  single = subprocess.run(  # meanwhile, the same run in one process
    [sys.executable, "-m", "hybridconv.main", *TINY, f"--workdir={one}", *SGD],
    cwd=ROOT,
    env=_environment(),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert single.returncode == 0, single.stderr[-3000:]
  cluster.wait_idle()
  state = cluster.client("scontrol", "show", "job", submitted.stdout.strip()).stdout
  assert "JobState=COMPLETED" in state, (tmp_path / "multihost.out").read_text()[-3000:]
  ours, theirs = _records(str(two)), _records(str(one))
  assert ours["files"] == theirs["files"]
  assert len(ours["metrics"]) == len(theirs["metrics"])  # written once, by process 0
  for key, value in theirs["summary"].items():
    assert ours["summary"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
  with open(two / "run_info.json", encoding="utf-8") as f:
    assert json.load(f)["starts"][0]["devices"]["processes"] == 2
  assert sorted(os.listdir(two / "checkpoints")) == sorted(os.listdir(one / "checkpoints"))


@pytest.mark.slow
@pytest.mark.parametrize(
  ("args", "says"),
  [
    (["--slurm_partition=nosuch"], "--slurm_partition='nosuch' is not a partition"),
    (["--grid", "nosuch=1,2"], "nosuch"),
    (["--slurm_mem=lots"], "--slurm_mem='lots'"),
    (["--slurm_mem=999999G"], "sbatch refused the job array"),  # more than the node has
  ],
  ids=["partition", "point", "memory", "sbatch"],
)
def test_bad_input_is_refused_before_anything_is_queued(cluster, tmp_path, args, says):
  root = tmp_path / "study"
  done = _study(*TINY, f"--workdir={root}", "--executor=slurm", *args, env=cluster.env)
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
  assert lines[0].startswith("error: ") and says in lines[0], lines[0]
  assert not cluster.queue()


@pytest.mark.slow
@pytest.mark.parametrize(
  ("args", "says"),
  [
    (["--executor=slurm", "--nosuch=1"], "Unknown command line flag 'nosuch'"),
    (["--executor=cloud"], "--executor"),
    (["--executor=slurm"], "sbatch is not on PATH"),
  ],
  ids=["unknown-flag", "executor", "no-sbatch"],
)
def test_without_a_cluster_bad_input_is_one_error_line(tmp_path, args, says):
  path = os.path.dirname(sys.executable)  # the venv's commands, not SLURM's
  done = _study(*TINY, f"--workdir={tmp_path}/s", *args, env=_environment({"PATH": path}))
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
  assert lines[0].startswith("error: ") and says in lines[0], lines[0]
  assert not os.path.exists(tmp_path / "s")


def test_the_warning_signals_of_slurm_stop_training_like_sigterm():
  for signum in (signal.SIGUSR2, signal.SIGUSR1):
    with preemption.PreemptionFlag() as flag:
      os.kill(os.getpid(), signum)
      assert flag.signal_name == signum.name
    assert preemption.exit_code(flag.signal_name) == 128 + signum.value


def test_executor_parameters_ask_sbatch_for_the_flags():
  options = slurm.Options(
    partition="gpu",
    time_minutes=90,
    gpus_per_task=1,
    mem="16G",
    sbatch=("qos=high", "--exclusive"),
    max_running=3,
  )
  assert slurm.executor_parameters(options, "study", tasks=10) == {
    "job_name": "study",
    "time": 90,
    "array_parallelism": 3,
    "signal_delay_s": 90,
    "partition": "gpu",
    "gpus_per_task": 1,
    "additional_parameters": {"qos": "high", "exclusive": True, "mem": "16G"},
  }
  assert slurm.executor_parameters(slurm.Options(), "s", tasks=4)["array_parallelism"] == 4


@pytest.mark.parametrize(
  "options",
  [
    slurm.Options(time_minutes=0),
    slurm.Options(gpus_per_task=-1),
    slurm.Options(mem="16 GB"),
    slurm.Options(sbatch=("=x",)),
  ],
)
def test_bad_options_are_refused(options):
  with pytest.raises(ValueError, match="--slurm_"):
    slurm.check_options(options)
