"""Device mesh, shardings and multi-host start-up for data-parallel training.

Training is data-parallel in the ``jax.pmap`` sense, written with ``jit`` and
``NamedSharding``: one mesh axis, ``'data'``, over every device of every
process; batches are split along it and the train state is replicated. JAX
inserts the gradient all-reduce itself because the loss is a mean over the
globally sharded batch.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

_INITIALIZE_CHOICES = ("auto", "always", "never")


def cluster_requested(dist_config) -> bool:
  """Whether the config or the environment asks for ``jax.distributed``.

  ``'auto'`` starts it when a coordinator address is given (config or
  ``JAX_COORDINATOR_ADDRESS``), under SLURM with more than one task, or on a
  multi-host Cloud TPU slice; single-process runs stay single-process.
  """
  mode = dist_config.initialize
  if mode not in _INITIALIZE_CHOICES:
    raise ValueError(f"config.distributed.initialize={mode!r} is not one of {_INITIALIZE_CHOICES}")
  if mode != "auto":
    return mode == "always"
  env = os.environ
  if dist_config.coordinator_address or env.get("JAX_COORDINATOR_ADDRESS"):
    return True
  if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
    return True
  return "," in env.get("TPU_WORKER_HOSTNAMES", "")


# Auto mode stops here: measured only on a 2-core host, where two devices beat one.
MAX_AUTO_CPU_DEVICES = 8


def check_cpu_devices(requested) -> None:
  """Refuses a ``config.cpu_devices`` that is not an int >= 0."""
  if not isinstance(requested, int) or requested < 0:
    raise ValueError(
      f"config.cpu_devices={requested!r} must be an int >= 0 "
      "(0 = one per core, 1 = a single CPU device)"
    )


def cpu_device_count(requested: int, batch_sizes, cores: int) -> int:
  """How many CPU devices to run: ``requested``, or for 0 one per core that divides the batches.

  Pure: ``cores`` is the number of cores this process may use. Auto mode takes
  the largest count up to ``min(cores, MAX_AUTO_CPU_DEVICES)`` that divides
  every batch size, so a config that works on one device still works.
  """
  check_cpu_devices(requested)
  if requested:
    return requested
  limit = max(1, min(cores, MAX_AUTO_CPU_DEVICES))
  return max(n for n in range(1, limit + 1) if all(b % n == 0 for b in batch_sizes))


def configure_cpu_devices(config) -> int | None:
  """Asks XLA for ``config.cpu_devices`` data-parallel CPU devices; call before JAX starts.

  Why: XLA:CPU runs one device's program largely one operation at a time, and
  many operations of a small network use one core; one device per core, each
  with its share of the batch, keeps every core busy (SimpleCNN train step on 2
  cores: 2,478 -> 3,414 img/s; see docs/training.md). The result is the same
  data-parallel step as on several GPUs, so the numbers match a one-device run
  up to float rounding. Accelerators are unaffected (the mesh uses the default
  backend's devices).

  Leaves JAX alone, returning None, in multi-process runs and when the
  environment already sets the count (``JAX_NUM_CPU_DEVICES`` or XLA's
  ``--xla_force_host_platform_device_count``); warns and returns None when JAX
  has already started with another count.
  """
  if cluster_requested(config.distributed):
    return None
  if (
    "JAX_NUM_CPU_DEVICES" in os.environ
    or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
  ):
    return None
  count = cpu_device_count(
    config.cpu_devices, (config.batch_size, config.eval_batch_size), len(os.sched_getaffinity(0))
  )
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:
    if len(jax.devices("cpu")) == count:  # started with this count already (a study worker)
      return count
    logging.warning("config.cpu_devices=%d not applied: JAX had already started", count)
    return None
  return count


def maybe_initialize_distributed(dist_config) -> bool:
  """Calls ``jax.distributed.initialize`` once when requested; returns whether it ran.

  Must run before any JAX computation. Unset config values (``''`` or ``-1``)
  are left to JAX's cluster auto-detection (SLURM, Cloud TPU, MPI, k8s).
  """
  if not cluster_requested(dist_config) or jax.distributed.is_initialized():
    return False
  kwargs = {}
  if dist_config.coordinator_address:
    kwargs["coordinator_address"] = dist_config.coordinator_address
  if dist_config.num_processes >= 0:
    kwargs["num_processes"] = dist_config.num_processes
  if dist_config.process_id >= 0:
    kwargs["process_id"] = dist_config.process_id
  jax.distributed.initialize(**kwargs)
  logging.info(
    "jax.distributed: process %d of %d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )
  return True


def make_mesh(devices=None) -> Mesh:
  """One-axis mesh over all devices (all processes), in ``jax.devices()`` order."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of the train state: a full copy on every device."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding of batches: the leading (example) axis split over ``'data'``."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(key: str, batch_size, devices: Mesh | int) -> None:
  """Refuses a batch size that is not a positive multiple of the device count.

  Every batch is split evenly over the devices, so this one check (and its one
  message) serves the config validation, which has the mesh, and the data
  pipelines, which have the size of the mesh's ``'data'`` axis.

  Args:
    key: the config key, named in the message as ``config.<key>``.
    batch_size: its value.
    devices: the mesh, or the number of devices a batch is split over.

  Raises:
    ValueError: naming the key, the value and the allowed values.
  """
  count = devices if isinstance(devices, int) else int(devices.devices.size)
  if _is_whole(batch_size) and batch_size >= 1 and batch_size % count == 0:
    return
  if count == jax.device_count():  # say where the count comes from
    where = (
      f"{count}: {jax.process_count()} process(es) x {jax.local_device_count()} local device(s)"
    )
  else:
    where = str(count)
  numeric = isinstance(batch_size, (int, float)) and math.isfinite(batch_size)
  nearest = round(batch_size / count) if numeric else 1
  raise ValueError(
    f"config.{key}={batch_size!r} must be a positive multiple of the number of "
    f"devices ({where}); e.g. {max(1, nearest) * count}"
  )


def _is_whole(value) -> bool:
  """Whether ``value`` is a whole number (8 or 8.0, not True or 2.5)."""
  try:
    return not isinstance(value, bool) and int(value) == value
  except (TypeError, ValueError, OverflowError):
    return False


def any_process(flag: bool) -> bool:
  """Whether ``flag`` is True on any process (the value itself when there is only one).

  Multi-process runs use it wherever processes must take the same branch, e.g.
  to stop on a signal that reached only some of them. It is a collective:
  every process must call it at the same point.
  """
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # noqa: PLC0415

  return bool(np.any(multihost_utils.process_allgather(np.asarray(bool(flag)))))


def all_processes(flag: bool) -> bool:
  """Whether ``flag`` is True on every process (a collective, like :func:`any_process`)."""
  return not any_process(not flag)


def sync_processes(name: str) -> None:
  """A barrier across processes (nothing with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415

    multihost_utils.sync_global_devices(name)
