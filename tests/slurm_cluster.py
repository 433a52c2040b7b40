"""A real one-node SLURM cluster for tests: munge, slurmctld and slurmd from a generated config.

Debian's ``slurm-wlm`` and ``munge`` packages (``make test`` installs them where packages may be
installed) run a whole cluster on this machine: a ``slurm.conf`` whose state, spool, pid, log and
munge socket paths all lie in one temporary folder, non-default free ports, and one node with
this machine's CPUs and memory. Its own ``munged`` (own socket) and daemons start in about a
second and are stopped by their pid files, so nothing of the machine's own set-up is used or
changed. The daemons run as root (``slurmd`` must); where that or a package is missing,
:func:`unavailable` says why and the tests skip.

Without accounting storage ``sacct`` fails; nothing here or in ``hybridconv study`` uses it
(array states come from ``squeue``, results from the points' records).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

MUNGE_KEY = "/etc/munge/munge.key"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scancel")
PARTITION = "debug"


def unavailable() -> str | None:
  """Why a cluster cannot be started here (None: it can)."""
  if os.geteuid() != 0:
    return "a one-node SLURM cluster needs root (slurmd runs jobs as their users)"
  missing = [name for name in DAEMONS + CLIENTS if find(name) is None]
  if missing:
    return (
      f"SLURM is not installed ({', '.join(missing)} not found); "
      "install Debian's slurm-wlm and munge (make test does where it may)"
    )
  if not os.path.exists(MUNGE_KEY):
    return f"no munge key at {MUNGE_KEY} (create one with `mungekey --create`)"
  return None


def find(program: str) -> str | None:
  """The program's path: on PATH, or in /usr/sbin (daemons, not on a non-root PATH)."""
  path = shutil.which(program) or os.path.join("/usr/sbin", program)
  return path if os.access(path, os.X_OK) else None


def _free_ports(count: int) -> list[int]:
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def _memory_mb() -> int:
  with open("/proc/meminfo", encoding="ascii") as f:
    for line in f:
      if line.startswith("MemTotal:"):
        return int(line.split()[1]) // 1024 - 512  # leave slurmd its margin
  return 1024


def config_text(folder: str, host: str, cpus: int, memory_mb: int, ports: list[int]) -> str:
  """A ``slurm.conf`` for one node named ``host`` whose every path lies in ``folder``."""
  path = lambda name: os.path.join(folder, name)  # noqa: E731
  return "\n".join(
    [
      "ClusterName=hybridconv-test",
      f"SlurmctldHost={host}",
      f"SlurmctldPort={ports[0]}",
      f"SlurmdPort={ports[1]}",
      "SlurmUser=root",
      "AuthType=auth/munge",
      "CredType=cred/munge",
      f"AuthInfo=socket={path('munge.socket')}",
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "MpiDefault=none",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_Core",
      "SchedulerType=sched/backfill",
      "AccountingStorageType=accounting_storage/none",
      "JobCompType=jobcomp/none",
      "JobAcctGatherType=jobacct_gather/none",
      "ReturnToService=2",
      "KillWait=10",  # seconds from a job's SIGTERM to its SIGKILL (scancel, time limit)
      "MinJobAge=300",  # finished jobs stay visible to squeue for 5 minutes
      "InactiveLimit=0",
      f"StateSaveLocation={path('state')}",
      f"SlurmdSpoolDir={path('spool')}",
      f"SlurmctldPidFile={path('slurmctld.pid')}",
      f"SlurmdPidFile={path('slurmd.pid')}",
      f"SlurmctldLogFile={path('slurmctld.log')}",
      f"SlurmdLogFile={path('slurmd.log')}",
      "SlurmctldDebug=info",
      "SlurmdDebug=info",
      f"NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
      f"PartitionName={PARTITION} Nodes={host} Default=YES OverSubscribe=FORCE:4 "
      "MaxTime=INFINITE State=UP",
      "",
    ]
  )


class Cluster:
  """A running one-node cluster; ``env`` is what a client needs (``SLURM_CONF``)."""

  def __init__(self, folder: str):
    self.folder = folder
    self.conf = os.path.join(folder, "slurm.conf")
    self.env = {**os.environ, "SLURM_CONF": self.conf}

  def start(self, timeout: float = 30.0) -> Cluster:
    """Writes the config, starts munged, slurmctld and slurmd, waits for the node to be idle."""
    for name in ("state", "spool"):
      os.makedirs(os.path.join(self.folder, name), exist_ok=True)
    os.chmod(self.folder, 0o755)  # munged refuses a socket folder others may write to
    host = socket.gethostname().split(".")[0]
    text = config_text(self.folder, host, os.cpu_count() or 1, _memory_mb(), _free_ports(2))
    with open(self.conf, "w", encoding="utf-8") as f:
      f.write(text)
    self._run(
      "munged",
      "--force",
      f"--key-file={MUNGE_KEY}",
      f"--socket={self._path('munge.socket')}",
      f"--pid-file={self._path('munged.pid')}",
      f"--log-file={self._path('munged.log')}",
      f"--seed-file={self._path('munged.seed')}",
    )
    self._run("slurmctld", "-f", self.conf)
    self._run("slurmd", "-f", self.conf)
    deadline = time.time() + timeout
    while time.time() < deadline:
      state = self.client("sinfo", "-h", "-o", "%t", check=False).stdout.strip()
      if state in ("idle", "mix", "alloc"):
        return self
      time.sleep(0.2)
    self.stop()
    raise RuntimeError(f"the SLURM node did not come up (sinfo: {state!r}); see {self.folder}")

  def _path(self, name: str) -> str:
    return os.path.join(self.folder, name)

  def _run(self, *command: str) -> None:
    program = find(command[0]) or command[0]
    done = subprocess.run(
      [program, *command[1:]], capture_output=True, text=True, env=self.env, timeout=30
    )
    if done.returncode:
      self.stop()
      raise RuntimeError(f"{command[0]} did not start: {done.stderr.strip()[-500:]}")

  def client(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs a SLURM client command against this cluster."""
    done = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=60)
    if check and done.returncode:
      raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done

  def queue(self, job_id: str | None = None) -> dict[str, str]:
    """``{job id: state}`` of the queue's jobs (array tasks one by one)."""
    args = ["squeue", "-h", "-r", "-o", "%i %T"] + (["-j", job_id] if job_id else [])
    lines = self.client(*args, check=False).stdout.split("\n")
    return dict(line.split() for line in lines if line.strip())

  def wait_idle(self, timeout: float = 300.0) -> None:
    """Waits until no job is pending or running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
      if not any(s in ("PENDING", "RUNNING", "COMPLETING") for s in self.queue().values()):
        return
      time.sleep(0.5)
    raise TimeoutError(f"jobs still queued after {timeout} s: {self.queue()}")

  def stop(self) -> None:
    """Cancels every job, then stops slurmd, slurmctld and munged by their pid files."""
    if os.path.exists(self._path("slurmctld.pid")):
      self.client("scancel", "--full", "--user", "root", check=False)
    pids = []
    for name in ("slurmd", "slurmctld", "munged"):  # all at once: each takes a second or two
      try:
        with open(self._path(f"{name}.pid"), encoding="ascii") as f:
          pids.append(int(f.read().strip()))
        os.kill(pids[-1], signal.SIGTERM)
      except (OSError, ValueError):
        continue
    deadline = time.time() + 10
    for pid in pids:
      while time.time() < deadline:
        try:
          os.kill(pid, 0)
        except ProcessLookupError:
          break
        time.sleep(0.05)
      else:
        try:
          os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
          pass
