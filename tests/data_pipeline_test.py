"""Device-resident pipeline: purity in (seed, step), epoch coverage, augmentation, eval mask,
config dispatch, and sharding over 4 fake CPU devices (in a subprocess)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh

from hybridconv.data import ArrayDataset, Augment, DevicePipeline, build_pipeline, load_dataset
from hybridconv.data.augment import channel_stats
from hybridconv.data.streaming import StreamingPipeline

REPO = pathlib.Path(__file__).resolve().parents[1]


def _mesh():
  return Mesh(np.array(jax.devices()[:1]), ("data",))


def _indexed_dataset(num_train=50, num_test=13, size=4):
  """Every pixel of image i equals i + 1 and its label is i: batches reveal their indices."""
  train = np.broadcast_to(
    np.arange(1, num_train + 1, dtype=np.uint8)[:, None, None, None], (num_train, size, size, 1)
  ).copy()
  test = np.broadcast_to(
    np.arange(1, num_test + 1, dtype=np.uint8)[:, None, None, None], (num_test, size, size, 1)
  ).copy()
  return ArrayDataset(
    train,
    np.arange(num_train, dtype=np.int32),
    test,
    np.arange(num_test, dtype=np.int32),
    num_classes=num_train,
    name="indexed",
  )


def _pipeline(dataset=None, augment=None, seed=0, batch=8, eval_batch=5):
  return DevicePipeline(
    dataset or _indexed_dataset(),
    global_batch_size=batch,
    eval_batch_size=eval_batch,
    seed=seed,
    mesh=_mesh(),
    augment_config=augment,
  )


def _pixels(pipeline, images):
  """Undo the normalisation: back to uint8 pixel values."""
  return np.round((np.asarray(images) * pipeline.std + pipeline.mean) * 255).astype(int)


def test_same_seed_and_step_give_the_same_batch():
  a, b = _pipeline(augment=Augment(1, True)), _pipeline(augment=Augment(1, True))
  later = a.train_batch(17)
  a.train_batch(3)
  np.testing.assert_array_equal(a.train_batch(17)["image"], later["image"])  # order-free
  np.testing.assert_array_equal(b.train_batch(17)["image"], later["image"])
  np.testing.assert_array_equal(b.train_batch(17)["label"], later["label"])
  other_seed = _pipeline(augment=Augment(1, True), seed=1).train_batch(17)
  assert not np.array_equal(other_seed["label"], later["label"])


def test_each_epoch_visits_every_example_at_most_once():
  pipeline = _pipeline()
  assert pipeline.steps_per_epoch == 6  # 50 // 8, 2 dropped per epoch
  epochs = []
  for epoch in range(3):
    labels = [np.asarray(pipeline.train_batch(epoch * 6 + s)["label"]) for s in range(6)]
    seen = np.concatenate(labels)
    assert len(np.unique(seen)) == 48  # no repeats within the epoch
    epochs.append(seen)
    # Without augmentation the pixels still say which example they came from.
    images = np.concatenate(
      [_pixels(pipeline, pipeline.train_batch(epoch * 6 + s)["image"]) for s in range(6)]
    )
    np.testing.assert_array_equal(
      images, np.broadcast_to((seen + 1)[:, None, None, None], images.shape)
    )
  assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch


def test_batch_dtype_shape_and_normalisation():
  dataset = _indexed_dataset()
  pipeline = _pipeline(dataset)
  batch = pipeline.train_batch(0)
  assert batch["image"].shape == (8, 4, 4, 1) and batch["image"].dtype == np.float32
  assert batch["label"].dtype == np.int32
  pixels = dataset.train_images.astype(np.float64) / 255
  np.testing.assert_allclose(pipeline.mean, [pixels.mean()], rtol=1e-6)
  np.testing.assert_allclose(pipeline.std, [pixels.std()], rtol=1e-5)
  mean, std = channel_stats(np.zeros((3, 2, 2, 2), np.uint8))
  np.testing.assert_array_equal(std, [1.0, 1.0])  # constant channels are not divided by 0


def test_random_crop_pads_with_zeros_and_keeps_content():
  pipeline = _pipeline(augment=Augment(crop_padding=2))
  shifted = 0
  for step in range(4):
    batch = pipeline.train_batch(step)
    pixels = _pixels(pipeline, batch["image"])
    assert pixels.shape == (8, 4, 4, 1)
    for image, label in zip(pixels, np.asarray(batch["label"]), strict=True):
      assert set(np.unique(image)) <= {0, label + 1}  # padding or the image's own value
      assert (image == label + 1).any()  # a 2-pixel shift of a 4-pixel image keeps some
      shifted += (image == 0).any()
  assert 0 < shifted < 32  # offsets vary: some crops are shifted, some are not


def test_horizontal_flip_mirrors_about_half():
  train = np.zeros((64, 3, 3, 1), np.uint8)
  train[:, :, 0] = 200  # left column bright: a flip moves it to the right
  dataset = ArrayDataset(
    train, np.zeros(64, np.int32), train[:4], np.zeros(4, np.int32), num_classes=1, name="left-bar"
  )
  pipeline = _pipeline(dataset, augment=Augment(horizontal_flip=True), batch=64)
  pixels = _pixels(pipeline, pipeline.train_batch(0)["image"])
  flipped = pixels[:, :, 2, 0].mean(axis=1) == 200
  kept = pixels[:, :, 0, 0].mean(axis=1) == 200
  assert np.all(flipped ^ kept)
  assert 16 < flipped.sum() < 48


def test_augmented_values_stay_in_the_normalised_pixel_range():
  from hybridconv.data.gratings import load_gratings_dataset

  dataset = load_gratings_dataset(num_train=64, num_test=8, image_size=12, noise=0.2)
  pipeline = _pipeline(dataset, augment=Augment(3, True), batch=32)
  images = np.asarray(pipeline.train_batch(5)["image"])
  low, high = (0 - pipeline.mean) / pipeline.std, (1 - pipeline.mean) / pipeline.std
  assert images.min() >= low - 1e-6 and images.max() <= high + 1e-6
  assert np.isfinite(images).all()


def test_eval_batches_fixed_order_with_mask():
  pipeline = _pipeline(eval_batch=5)
  batches = list(pipeline.eval_batches())
  assert len(batches) == 3 == pipeline.num_eval_batches  # 13 examples: 5 + 5 + 3 and 2 padding
  labels = np.concatenate([np.asarray(b["label"]) for b in batches])
  mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
  np.testing.assert_array_equal(mask, np.arange(15) < 13)
  np.testing.assert_array_equal(labels[:13], np.arange(13))
  pixels = np.concatenate([_pixels(pipeline, b["image"]) for b in batches])
  np.testing.assert_array_equal(pixels[:13, 0, 0, 0], np.arange(1, 14))
  np.testing.assert_array_equal(pixels[13:], 0)
  again = np.concatenate([np.asarray(b["image"]) for b in pipeline.eval_batches()])
  np.testing.assert_array_equal(again, np.concatenate([np.asarray(b["image"]) for b in batches]))


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(batch=51), "global_batch_size=51 exceeds the 50 training examples"),
    (dict(batch=0), r"config.batch_size=0 must be a positive multiple of the number of devices"),
    (
      dict(eval_batch=2.5),
      r"config.eval_batch_size=2.5 must be a positive multiple of the number of devices",
    ),
  ],
)
def test_bad_construction(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _pipeline(**kwargs)


def test_bad_step_augment_and_mesh():
  pipeline = _pipeline()
  with pytest.raises(ValueError, match="step must be an int >= 0, got -1"):
    pipeline.train_batch(-1)
  with pytest.raises(ValueError, match="crop_padding must be an int >= 0, got -2"):
    Augment(crop_padding=-2)
  with pytest.raises(ValueError, match="horizontal_flip must be a bool"):
    Augment(horizontal_flip="yes")
  mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
  with pytest.raises(ValueError, match=r"axis named 'data'.*\('batch',\)"):
    DevicePipeline(_indexed_dataset(), global_batch_size=8, eval_batch_size=8, seed=0, mesh=mesh)


def _config(**overrides):
  config = ml_collections.ConfigDict(
    dict(
      source="gratings",
      name="gratings",
      data_dir="",
      pipeline="device",
      prepare=False,
      train_size=0,
      subset_seed=-1,
      validation_size=0,
      validation_seed=0,
      augment=dict(crop_padding=2, horizontal_flip=False),
      gratings=dict(
        num_train=96,
        num_test=20,
        image_size=16,
        task="frequency",
        num_classes=3,
        noise=0.05,
        envelope_sigma=0.0,
        seed=0,
      ),
    )
  )
  config.update(overrides)
  return config


def test_build_pipeline_dispatch():
  device = build_pipeline(_config(), global_batch_size=16, eval_batch_size=8, seed=0, mesh=_mesh())
  assert isinstance(device, DevicePipeline)
  assert device.image_shape == (16, 16, 1) and device.num_classes == 3
  assert device.augment == Augment(crop_padding=2, horizontal_flip=False)
  streaming = build_pipeline(
    _config(pipeline="streaming"), global_batch_size=16, eval_batch_size=8, seed=0, mesh=_mesh()
  )
  assert isinstance(streaming, StreamingPipeline)
  assert streaming.train_batch(0)["image"].shape == (16, 16, 16, 1)
  assert load_dataset(_config()).name == "gratings_frequency"


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      dict(source="hdf5"),
      r"data.source must be one of \('idx', 'tfds', 'gratings', 'imagefolder'\), got 'hdf5'",
    ),
    (dict(pipeline="tfdata"), r"data.pipeline must be one of \('device', 'streaming'\)"),
  ],
)
def test_unknown_source_or_pipeline(overrides, message):
  with pytest.raises(ValueError, match=message):
    build_pipeline(
      _config(**overrides), global_batch_size=16, eval_batch_size=8, seed=0, mesh=_mesh()
    )
  if "source" in overrides:
    with pytest.raises(ValueError, match=message):
      load_dataset(_config(**overrides))


_SHARDED_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import Mesh, PartitionSpec
    from hybridconv.data import ArraySource, Augment, DevicePipeline, StreamingPipeline
    from hybridconv.data.gratings import load_gratings_dataset

    assert jax.device_count() == 4, jax.devices()
    ds = load_gratings_dataset(num_train=100, num_test=10, image_size=8, noise=0.1)
    mesh4 = Mesh(np.array(jax.devices()), ("data",))
    mesh1 = Mesh(np.array(jax.devices()[:1]), ("data",))
    kw = dict(global_batch_size=16, eval_batch_size=8, seed=3, augment_config=Augment(2, True))
    p4, p1 = DevicePipeline(ds, mesh=mesh4, **kw), DevicePipeline(ds, mesh=mesh1, **kw)
    for step in (0, 7, 13):
      b4, b1 = p4.train_batch(step), p1.train_batch(step)
      for key in ("image", "label"):
        assert b4[key].sharding.spec == PartitionSpec("data"), b4[key].sharding
        shards = b4[key].addressable_shards
        assert len(shards) == 4 and all(s.data.shape[0] == 4 for s in shards)
        # Same values whatever the number of devices.
        np.testing.assert_array_equal(np.asarray(b4[key]), np.asarray(b1[key]))
    e4 = list(p4.eval_batches())
    e1 = list(p1.eval_batches())
    assert len(e4) == 2 and e4[1]["mask"].sharding.spec == PartitionSpec("data")
    for a, b in zip(e4, e1):
      for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
    try:
      DevicePipeline(ds, global_batch_size=6, eval_batch_size=8, seed=0, mesh=mesh4)
      raise AssertionError("batch 6 on 4 devices was accepted")
    except ValueError as e:
      assert str(e) == ("config.batch_size=6 must be a positive multiple of the number of "
                        "devices (4: 1 process(es) x 4 local device(s)); e.g. 8"), e
    s4 = StreamingPipeline(ArraySource(ds.train_images, ds.train_labels),
                           ArraySource(ds.test_images, ds.test_labels), num_classes=8,
                           mesh=mesh4, num_threads=1, **kw)
    batch = s4.train_batch(0)
    assert batch["image"].sharding.spec == PartitionSpec("data")
    assert len(batch["image"].addressable_shards) == 4
    masks = [np.asarray(b["mask"]).sum() for b in s4.eval_batches()]
    assert masks == [8, 2], masks
    print("SHARDED-OK")
""")


@pytest.mark.slow
def test_sharding_over_four_fake_cpu_devices():
  # JAX_NUM_CPU_DEVICES must be set before JAX starts, and pytest workers may
  # already have started it: run in a fresh interpreter.
  env = dict(
    os.environ,
    JAX_NUM_CPU_DEVICES="4",
    JAX_PLATFORMS="cpu",
    PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
  )
  result = subprocess.run(
    [sys.executable, "-c", _SHARDED_SCRIPT],
    env=env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0 and "SHARDED-OK" in result.stdout, result.stderr[-4000:]


def _flip_pattern(pipeline, step):
  """Which rows of training batch ``step`` are mirrored (all images are the same left bar)."""
  pixels = _pixels(pipeline, pipeline.train_batch(step)["image"])
  flipped = pixels[:, :, 2, 0].mean(axis=1) == 200
  assert np.all(flipped ^ (pixels[:, :, 0, 0].mean(axis=1) == 200))
  return flipped


def test_augmentation_draws_depend_on_the_step_within_and_across_epochs():
  train = np.zeros((64, 3, 3, 1), np.uint8)
  train[:, :, 0] = 200  # identical images: the batch content no longer depends on the order
  dataset = ArrayDataset(
    train, np.zeros(64, np.int32), train[:4], np.zeros(4, np.int32), num_classes=1, name="left-bar"
  )
  pipeline = _pipeline(dataset, augment=Augment(horizontal_flip=True), batch=32)
  assert pipeline.steps_per_epoch == 2
  patterns = [_flip_pattern(pipeline, step) for step in range(4)]
  # Steps 0 and 1 share an epoch, 2 and 3 the next one: every step draws afresh.
  for a in range(4):
    for b in range(a + 1, 4):
      assert not np.array_equal(patterns[a], patterns[b]), (a, b)
  np.testing.assert_array_equal(_flip_pattern(pipeline, 1), patterns[1])
  other_seed = _pipeline(dataset, augment=Augment(horizontal_flip=True), batch=32, seed=5)
  assert not np.array_equal(_flip_pattern(other_seed, 1), patterns[1])
