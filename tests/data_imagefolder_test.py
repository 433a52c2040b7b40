"""Image folders of variable-size JPEGs/PNGs: decoding, crops, the streaming pipeline, training."""

from __future__ import annotations

import io
import json
import multiprocessing
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from imagefolder_support import make_imagefolder, random_photo, write_image, write_tfds_imagenette
from jax.sharding import Mesh
from PIL import Image

from configs import tiny
from hybridconv import tracking
from hybridconv.data import DecodeConfig, StreamingPipeline, crops, decode, open_imagefolder
from hybridconv.training import train

NUM_TRAIN = 3 * 8 + 1  # 8 per class and one truncated file


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
  return make_imagefolder(tmp_path_factory.mktemp("images") / "folder")


def _mesh():
  return Mesh(np.array(jax.devices()[:1]), ("data",))


def _pipeline(folder, *, batch=5, seed=0, workers=0, size=24):
  train_source, val_source, classes = open_imagefolder(str(folder))
  return StreamingPipeline(
    train_source,
    val_source,
    num_classes=len(classes),
    global_batch_size=batch,
    eval_batch_size=4,
    seed=seed,
    mesh=_mesh(),
    num_threads=2,
    decode=DecodeConfig(image_size=size, eval_resize=size + 4, workers=workers),
  )


def _raw_batches(pipeline, steps, start=0):
  iterator = pipeline.shard_batches(start)
  return [next(iterator) for _ in range(steps)]


def test_folder_classes_are_sorted_names_and_labels_follow(folder):
  train_source, val_source, classes = open_imagefolder(str(folder))
  assert classes == ["cat", "dog", "fish"]
  assert (len(train_source), len(val_source)) == (NUM_TRAIN, 9)
  for i in range(len(train_source)):
    record = train_source[i]
    assert classes[record["label"]] == pathlib.Path(record["file_name"]).parent.name
    assert isinstance(record["image"], bytes)


@pytest.mark.parametrize(
  "kind, suffix",
  [
    ("rgb", ".jpg"),
    ("grey", ".jpg"),
    ("cmyk", ".jpg"),
    ("grey", ".png"),
    ("palette", ".png"),
    ("rgba", ".png"),
  ],
)
def test_every_colour_mode_decodes_to_rgb(tmp_path, kind, suffix):
  path = tmp_path / f"image{suffix}"
  write_image(path, random_photo(np.random.default_rng(1)), kind)
  data = path.read_bytes()
  pixels = decode.decode_rgb(data)
  assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
  assert pixels.shape[:2] == decode.image_size(data)
  if kind == "grey":  # grey stays grey: all channels equal
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])


@pytest.mark.parametrize("data", [b"", b"not an image at all", None])
def test_corrupt_data_raises_decode_error(folder, data):
  if data is None:  # a JPEG cut off after its header
    whole = (folder / "train" / "cat" / "000.jpg").read_bytes()
    data = whole[: len(whole) // 2]
  with pytest.raises(decode.DecodeError):
    decode.decode_rgb(data)


def test_reduced_size_decoding_keeps_the_requested_pixels_and_the_picture():
  image = random_photo(np.random.default_rng(2), 400, 480)
  buffer = io.BytesIO()
  image.convert("RGB").save(buffer, format="JPEG", quality=90)
  data = buffer.getvalue()
  height, width = decode.image_size(data)
  small = decode.decode_rgb(data, min_height=height // 4, min_width=width // 4)
  assert height // 4 <= small.shape[0] < height // 2 + 1  # a real reduction, not the full size
  assert small.shape[1] >= width // 4
  # A 64x64 centre crop (a 6x downscale, decoded at 1/4) against Pillow's
  # antialiased resize of the full decode: resampling noise (a few levels), not
  # a shifted or wrong picture (tens of levels).
  full = decode.decode_rgb(data)
  top, left, h, w = crops.center_box(height, width, 64, 64)
  reference = Image.fromarray(full).resize(
    (64, 64), Image.BILINEAR, box=(left, top, left + w, top + h)
  )
  reduced_crop = crops.eval_crop(data, size=64, resize=64)
  assert np.abs(np.asarray(reference, float) - reduced_crop).mean() < 6.0
  wrong = crops.eval_crop(full[::-1], size=64, resize=64)  # the same pixels, upside down
  assert np.abs(np.asarray(reference, float) - wrong).mean() > 15.0


def test_random_resized_boxes_stay_inside_with_the_configured_area_and_ratio():
  scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
  for i in range(300):
    rng = crops.crop_rng(0, 1, i)
    height, width = int(rng.integers(20, 300)), int(rng.integers(20, 300))
    top, left, h, w = crops.random_resized_box(rng, height, width, scale, ratio)
    assert 0 <= top and 0 <= left and top + h <= height and left + w <= width and h >= 1
    # Rounding to whole pixels moves area and ratio by at most about one pixel per side.
    assert scale[0] * height * width - (h + w) <= h * w <= height * width
    assert ratio[0] - 1 / h - 1 / w <= w / h or w == width  # fallback: clamped to the image


def test_crops_are_a_function_of_seed_step_and_index(folder):
  data = (folder / "train" / "dog" / "000.jpg").read_bytes()
  kwargs = dict(size=24, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip=True)
  same = [crops.train_crop(data, crops.crop_rng(3, 7, 2), **kwargs) for _ in range(2)]
  np.testing.assert_array_equal(*same)
  others = [
    crops.train_crop(data, crops.crop_rng(*key), **kwargs)
    for key in ((4, 7, 2), (3, 8, 2), (3, 7, 3))
  ]
  assert all(not np.array_equal(same[0], other) for other in others)


def test_train_batches_have_fixed_shape_and_repeat_for_a_fixed_seed(folder):
  pipeline = _pipeline(folder)
  raw = _raw_batches(pipeline, 3)
  for batch in raw:
    assert batch["image"].shape == (5, 24, 24, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and set(batch["label"]) <= {0, 1, 2}
  assert pipeline.image_shape == (24, 24, 3)
  device = pipeline.train_batch(0)
  assert device["image"].shape == (5, 24, 24, 3) and device["image"].dtype == np.float32
  again = _raw_batches(_pipeline(folder), 3)
  other_seed = _raw_batches(_pipeline(folder, seed=1), 3)
  for a, b in zip(raw, again, strict=True):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert not all(
    np.array_equal(a["image"], c["image"]) for a, c in zip(raw, other_seed, strict=True)
  )


def test_the_truncated_file_is_skipped_and_counted_once_per_epoch(folder):
  pipeline = _pipeline(folder)  # batch 5 divides the 25 files: every epoch holds it once
  assert pipeline.steps_per_epoch == 5
  for step in range(10):
    pipeline.train_batch(step)
  assert pipeline.skipped_images == 2
  assert pipeline.metrics()["data/skipped_images"] == 2
  # The count survives a restart from the iterator state.
  state = json.loads(json.dumps(pipeline.get_state()))
  resumed = _pipeline(folder)
  resumed.set_state(state)
  assert resumed.skipped_images == 2


def test_eval_preprocessing_is_deterministic_and_masks_unreadable_files(folder, tmp_path):
  first = [jax.device_get(b) for b in _pipeline(folder).eval_batches()]
  second = [jax.device_get(b) for b in _pipeline(folder).eval_batches()]
  assert len(first) == 3  # 9 images in batches of 4
  for a, b in zip(first, second, strict=True):
    np.testing.assert_array_equal(a["image"], b["image"])
  assert [int(b["mask"].sum()) for b in first] == [4, 4, 1]
  # A corrupt val file: masked out and counted, not a crash.
  copy = make_imagefolder(tmp_path / "copy", per_class=(5, 2), corrupt=False)
  (copy / "val" / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
  pipeline = _pipeline(copy)
  masks = [np.asarray(b["mask"]) for b in pipeline.eval_batches()]
  assert int(sum(m.sum() for m in masks)) == 6
  assert pipeline.metrics()["data/skipped_eval_images"] == 1


@pytest.mark.slow
def test_iterator_resumes_exactly_with_worker_processes(folder):
  pipeline = _pipeline(folder, batch=4, workers=2)
  for step in range(3):
    pipeline.train_batch(step)
  assert len(multiprocessing.active_children()) >= 2  # grain's decoding workers
  state = pipeline.get_state()
  expected = [jax.device_get(pipeline.train_batch(step)) for step in range(3, 9)]  # 2 epochs
  resumed = _pipeline(folder, batch=4, workers=2)
  resumed.set_state(state)
  for step, want in zip(range(3, 9), expected, strict=True):
    got = jax.device_get(resumed.train_batch(step))
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["label"], want["label"])
  # Workers and read threads produce the same batches.
  threads = _pipeline(folder, batch=4, workers=0)
  np.testing.assert_array_equal(
    jax.device_get(threads.train_batch(3))["image"], expected[0]["image"]
  )


@pytest.mark.parametrize(
  "mutate, message",
  [
    (lambda root: None, "no such"),
    (lambda root: (root / "val").rename(root / "validation"), "has no val/ folder"),
    (
      lambda root: (
        (root / "train" / "dog" / "x").mkdir()
        or [p.unlink() for p in (root / "train" / "dog").glob("*.*")]
      ),
      "holds no images",
    ),
    (lambda root: (root / "val" / "zebra").mkdir(), "that train/ lacks"),
  ],
)
def test_bad_folders_are_refused_with_one_line(tmp_path, mutate, message):
  root = tmp_path / "bad"
  if message == "no such":
    root = tmp_path / "missing"
    message = "is not a directory"
  else:
    make_imagefolder(root, per_class=(2, 1), corrupt=False)
    mutate(root)
  with pytest.raises(ValueError, match=message) as error:
    open_imagefolder(str(root))
  assert "\n" not in str(error.value)


def test_empty_train_folder_is_refused(tmp_path):
  (tmp_path / "train").mkdir()
  (tmp_path / "val").mkdir()
  with pytest.raises(ValueError, match="has no class folders"):
    open_imagefolder(str(tmp_path))


@pytest.mark.slow
def test_small_alexnet_trains_from_the_folder_end_to_end(folder, tmp_path):
  config = tiny.get_config("free")
  config.data.source = "imagefolder"
  config.data.data_dir = str(folder)
  config.data.pipeline = "streaming"
  config.data.decode.image_size = 32
  config.data.decode.eval_resize = 36
  config.data.decode.workers = 0
  config.model.name = "alexnet_small"
  config.batch_size = 5
  config.eval_batch_size = 3
  config.train_for = "6 steps"  # more than an epoch: the truncated file is met once
  config.log_every = "3 steps"
  config.cpu_devices = 1
  config.lock()
  workdir = tmp_path / "work"
  final = train.train_and_evaluate(config, str(workdir))
  assert final["step"] == 6 and np.isfinite(final["train/loss"])
  assert 0.0 <= final["eval/accuracy"] <= 1.0
  assert final["data/skipped_images"] == 1
  assert json.loads((workdir / "classes.json").read_text()) == ["cat", "dog", "fish"]
  logged = [e for e in tracking.read_events(str(workdir)) if "data/skipped_images" in e]
  assert logged and logged[-1]["data/skipped_images"] == 1


def test_the_device_pipeline_refuses_an_image_folder(folder, tmp_path):
  config = tiny.get_config("free")
  config.data.source = "imagefolder"
  config.data.data_dir = str(folder)
  config.lock()
  with pytest.raises(ValueError, match="needs data.pipeline='streaming'"):
    train.train_and_evaluate(config, str(tmp_path / "work"))


def test_decode_config_refuses_bad_values():
  with pytest.raises(ValueError, match="eval_resize"):
    DecodeConfig(image_size=224, eval_resize=200)
  with pytest.raises(ValueError, match="crop_scale"):
    DecodeConfig(crop_scale=(0.5, 0.1))
  with pytest.raises(ValueError, match="image_size"):
    DecodeConfig(image_size=0)


class _FakeBuilder:
  """What open_tfds_streaming_sources reads of a TFDS builder; records the decoders asked for."""

  def __init__(self, image_shape, records):
    feature = type("F", (), {"shape": image_shape, "num_classes": 3})()
    self.info = type(
      "I",
      (),
      {"features": {"image": feature, "label": feature}, "splits": {"train": 1, "validation": 1}},
    )()
    self.records, self.decoders = records, []

  def as_data_source(self, split, decoders=None):
    self.decoders.append(decoders)
    return self.records


@pytest.mark.parametrize("shape, encoded", [((None, None, 3), True), ((32, 32, 3), False)])
def test_tfds_images_of_varying_size_stay_encoded_for_the_workers(
  folder, monkeypatch, shape, encoded
):
  import tensorflow_datasets as tfds

  from hybridconv.data import tfds_source

  # TFDS's numpy parser hands skipped features over as 0-d object arrays of bytes.
  train_source, _, _ = open_imagefolder(str(folder))
  records = [
    {"image": np.array(train_source[i]["image"], dtype=object), "label": train_source[i]["label"]}
    for i in range(len(train_source))
  ]
  builder = _FakeBuilder(shape, records)
  monkeypatch.setattr(tfds_source, "open_tfds_builder", lambda *a, **k: builder)
  train_records, eval_records, num_classes, is_encoded = tfds_source.open_tfds_streaming_sources(
    "imagenette"
  )
  assert (num_classes, is_encoded) == (3, encoded)
  if not encoded:
    assert builder.decoders == [None, None]
    return
  assert all(isinstance(d["image"], tfds.decode.SkipDecoding) for d in builder.decoders)
  pipeline = StreamingPipeline(
    train_records,
    eval_records,
    num_classes=3,
    global_batch_size=5,
    eval_batch_size=5,
    seed=0,
    mesh=_mesh(),
    decode=DecodeConfig(image_size=24, eval_resize=28),
  )
  batches = _raw_batches(pipeline, 5)
  assert batches[0]["image"].shape == (5, 24, 24, 3)
  assert sum(int(b["skipped"]) for b in batches) == 1  # one epoch: the truncated file once


@pytest.mark.slow
def test_cli_refuses_a_class_folder_without_images_with_one_error_line(tmp_path):
  root = make_imagefolder(tmp_path / "images", per_class=(2, 1), corrupt=False)
  (root / "train" / "empty_class").mkdir()
  workdir = tmp_path / "work"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "hybridconv.main",
      "--config=configs/imagefolder.py",
      f"--config.data.data_dir={root}",
      f"--workdir={workdir}",
    ],
    cwd=pathlib.Path(__file__).resolve().parents[1],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "empty_class holds no images" in errors[0]
  assert not workdir.exists()


@pytest.mark.slow
def test_small_alexnet_trains_from_a_real_prepared_tfds_imagenette(tmp_path):
  """Real ArrayRecord files read without TensorFlow; JPEGs decoded in a worker process."""
  write_tfds_imagenette(tmp_path / "tfds", num_train=12, num_val=5)
  config = tiny.get_config("free")
  config.data.source = "tfds"
  config.data.name = "imagenette"
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.pipeline = "streaming"
  config.data.decode.image_size = 32
  config.data.decode.eval_resize = 36
  config.data.decode.workers = 1  # the TFDS source is pickled into the worker
  config.model.name = "alexnet_small"
  config.batch_size = 4
  config.eval_batch_size = 5
  config.train_for = "4 steps"
  config.cpu_devices = 1
  config.lock()
  final = train.train_and_evaluate(config, str(tmp_path / "work"))
  assert final["step"] == 4 and np.isfinite(final["train/loss"])
  assert 0.0 <= final["eval/accuracy"] <= final["eval/top5_accuracy"] <= 1.0
  assert final["data/skipped_images"] == 0 and final["data/skipped_eval_images"] == 0
