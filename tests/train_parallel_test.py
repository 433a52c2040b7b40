"""Data parallelism: 4 fake CPU devices and 2 processes reproduce the 1-device run.

Each run is a subprocess, because the number of CPU devices is fixed when JAX
starts (and pytest-xdist workers may already have started it). All runs use SGD:
Adam's first step is ``lr * sign(g)`` for tiny gradients, which would turn
float reduction-order noise into full-size parameter differences.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from hybridconv import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3
OVERRIDES = {
  "optim.name": "sgd",
  "optim.learning_rate": 0.05,
  "train_for": f"{STEPS} steps",
  "batch_size": 32,
  "eval_batch_size": 64,
}

SCRIPT = """
import json, sys
from configs import tiny
from hybridconv.training import train
config = tiny.get_config("hybrid")
for dotted, value in json.loads(sys.argv[2]).items():
  *parents, leaf = dotted.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value
config.lock()
final = train.train_and_evaluate(config, sys.argv[1])
print("FINAL", json.dumps(final))
"""


def _launch(workdir, num_devices, overrides=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(num_devices), PYTHONPATH=ROOT)
  return subprocess.Popen(
    [sys.executable, "-c", SCRIPT, str(workdir), json.dumps({**OVERRIDES, **(overrides or {})})],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _finish(process, timeout=400):
  stdout, stderr = process.communicate(timeout=timeout)
  assert process.returncode == 0, stderr[-3000:]
  line = [x for x in stdout.splitlines() if x.startswith("FINAL ")][-1]
  return json.loads(line[len("FINAL ") :])


def _params(workdir):
  """Params and model state of the last checkpoint, restored onto this process's one device."""
  path = os.path.join(str(workdir), "checkpoints", str(STEPS), "state")
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
    checkpointer.metadata(path).item_metadata.tree,
  )
  restored = checkpointer.restore(path, target)
  flat = {}

  def visit(prefix, node):
    if isinstance(node, dict):
      for key, value in node.items():
        visit(f"{prefix}/{key}", value)
    else:
      flat[prefix] = np.asarray(node)

  visit("", restored["params"])
  visit("", {"model_state": restored["model_state"]})
  return flat


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("one_device")
  return _finish(_launch(workdir, 1)), _params(workdir)


def _assert_same_training(run, reference):
  (final, params), (ref_final, ref_params) = run, reference
  assert final["step"] == ref_final["step"] == STEPS
  assert final["train/loss"] == pytest.approx(ref_final["train/loss"], rel=1e-5)
  assert params.keys() == ref_params.keys()
  for key, value in ref_params.items():
    np.testing.assert_allclose(params[key], value, rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_four_devices_match_one_device(one_device_run, tmp_path):
  final = _finish(_launch(tmp_path, 4))
  _assert_same_training((final, _params(tmp_path)), one_device_run)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_device(one_device_run, tmp_path):
  address = f"127.0.0.1:{_free_port()}"
  processes = [
    _launch(
      tmp_path,
      1,
      {
        "distributed.coordinator_address": address,
        "distributed.num_processes": 2,
        "distributed.process_id": i,
      },
    )
    for i in range(2)
  ]
  finals = [_finish(p) for p in processes]
  assert finals[0]["eval/accuracy"] == finals[1]["eval/accuracy"]
  assert finals[0]["train/loss"] == finals[1]["train/loss"]
  _assert_same_training((finals[0], _params(tmp_path)), one_device_run)
  # Only process 0 writes metrics.
  with open(os.path.join(tmp_path, "metrics.jsonl"), encoding="utf-8") as f:
    steps = [json.loads(line)["step"] for line in f if "train/loss" in line]
  assert steps == [2, 3]


@pytest.mark.parametrize(
  "requested,batches,cores,expected",
  [
    (0, (128, 1000), 2, 2),  # one per core
    (0, (128, 1000), 16, 8),  # auto stops at MAX_AUTO_CPU_DEVICES
    (0, (128, 1000), 3, 2),  # 3 does not divide 128: the largest count that does
    (0, (100, 1000), 8, 5),
    (0, (7, 1000), 4, 1),
    (3, (128, 1000), 2, 3),  # an explicit count is taken as given (validation refuses it later)
  ],
)
def test_cpu_device_count(requested, batches, cores, expected):
  assert sharding.cpu_device_count(requested, batches, cores) == expected


@pytest.mark.parametrize("bad", [-1, 1.5, "2"])
def test_cpu_device_count_refuses_bad_values(bad):
  with pytest.raises(ValueError, match="config.cpu_devices"):
    sharding.cpu_device_count(bad, (128,), 2)


@pytest.mark.parametrize(
  "environment,expected",
  [
    ({}, ["3", "3"]),
    ({"JAX_NUM_CPU_DEVICES": "2"}, ["None", "2"]),  # the environment's count wins
  ],
)
@pytest.mark.slow
def test_configure_cpu_devices_before_jax_starts(environment, expected):
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  script = (
    "import jax\n"
    "from configs import tiny\n"
    "from hybridconv import sharding\n"
    "config = tiny.get_config()\n"
    "config.cpu_devices = 3\n"
    "print(sharding.configure_cpu_devices(config), jax.device_count())\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", script],
    env=env | environment,
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.split() == expected
