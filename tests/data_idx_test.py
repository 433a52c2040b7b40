"""IDX reader: round trips on files the tests write, and every refusal."""

from __future__ import annotations

import gzip
import pathlib

import ml_collections
import numpy as np
import pytest

from hybridconv.data import idx, load_dataset

FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
  header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write(directory: pathlib.Path, stem: str, raw: bytes, gz: bool) -> None:
  path = directory / (f"{stem}.gz" if gz else stem)
  if gz:
    with gzip.open(path, "wb") as f:
      f.write(raw)
  else:
    path.write_bytes(raw)


def _write_dataset(directory, *, gz=False, n_train=6, n_test=3, train_labels=None):
  rng = np.random.default_rng(0)
  arrays = {
    "train-images-idx3-ubyte": (rng.integers(0, 256, (n_train, 5, 4)), idx.IMAGES_MAGIC),
    "train-labels-idx1-ubyte": (
      np.arange(n_train) % 10 if train_labels is None else np.asarray(train_labels),
      idx.LABELS_MAGIC,
    ),
    "t10k-images-idx3-ubyte": (rng.integers(0, 256, (n_test, 5, 4)), idx.IMAGES_MAGIC),
    "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10, idx.LABELS_MAGIC),
  }
  for stem, (array, magic) in arrays.items():
    _write(directory, stem, _idx_bytes(array, magic), gz)
  return {stem: array for stem, (array, _) in arrays.items()}


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path, gz):
  arrays = _write_dataset(tmp_path, gz=gz)
  ds = idx.load_idx_dataset("fashion_mnist", str(tmp_path))
  assert ds.train_images.shape == (6, 5, 4, 1) and ds.train_images.dtype == np.uint8
  np.testing.assert_array_equal(ds.train_images[..., 0], arrays["train-images-idx3-ubyte"])
  np.testing.assert_array_equal(ds.test_images[..., 0], arrays["t10k-images-idx3-ubyte"])
  np.testing.assert_array_equal(ds.train_labels, arrays["train-labels-idx1-ubyte"])
  assert ds.train_labels.dtype == np.int32 and ds.num_classes == 10


def test_environment_variable_is_the_default_dir(tmp_path, monkeypatch):
  _write_dataset(tmp_path)
  monkeypatch.setenv(idx.ENV_VAR, str(tmp_path))
  assert idx.idx_data_dir("fashion_mnist") == tmp_path
  assert len(idx.load_idx_dataset("fashion_mnist").train_labels) == 6
  # An explicit data_dir wins over the environment.
  assert idx.idx_data_dir("fashion_mnist", "/elsewhere") == pathlib.Path("/elsewhere")


def test_bad_magic_names_file_and_numbers(tmp_path):
  _write_dataset(tmp_path)
  # Labels file where the images file should be.
  raw = (tmp_path / "train-labels-idx1-ubyte").read_bytes()
  (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
  with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*0x00000801.*expected 0x00000803"):
    idx.load_idx_dataset("fashion_mnist", str(tmp_path))


def test_wrong_dtype_byte_is_refused():
  raw = _idx_bytes(np.zeros((2, 2, 2)), 0x00000D03)  # 0x0D = float32
  with pytest.raises(ValueError, match="magic number 0x00000d03"):
    idx.parse_idx(raw, expected_magic=idx.IMAGES_MAGIC, source="f")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file(tmp_path, gz):
  arrays = _write_dataset(tmp_path, gz=gz)
  raw = _idx_bytes(arrays["train-images-idx3-ubyte"], idx.IMAGES_MAGIC)
  _write(tmp_path, "train-images-idx3-ubyte", raw[:-7], gz)
  expected = 16 + 6 * 5 * 4
  with pytest.raises(
    ValueError,
    match=rf"train-images.*truncated.*\(6, 5, 4\).*{expected} bytes "
    rf"are expected, found {expected - 7}",
  ):
    idx.load_idx_dataset("fashion_mnist", str(tmp_path))


def test_over_long_and_short_header():
  raw = _idx_bytes(np.zeros(4), idx.LABELS_MAGIC)
  with pytest.raises(ValueError, match="over-long.*12 bytes are expected, found 13"):
    idx.parse_idx(raw + b"\0", expected_magic=idx.LABELS_MAGIC, source="labels")
  with pytest.raises(ValueError, match="truncated header"):
    idx.parse_idx(raw[:6], expected_magic=idx.LABELS_MAGIC, source="labels")
  with pytest.raises(ValueError, match="too short"):
    idx.parse_idx(b"\0\0", expected_magic=idx.LABELS_MAGIC, source="labels")


def test_count_mismatch_and_label_range(tmp_path):
  _write_dataset(tmp_path, train_labels=np.arange(5))
  with pytest.raises(ValueError, match="6 images but .* 5 labels"):
    idx.load_idx_dataset("fashion_mnist", str(tmp_path))
  _write_dataset(tmp_path, train_labels=[0, 1, 2, 3, 4, 10])
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), found 10"):
    idx.load_idx_dataset("fashion_mnist", str(tmp_path))


def test_corrupt_gzip(tmp_path):
  _write_dataset(tmp_path, gz=True)
  (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
  with pytest.raises(ValueError, match="not a valid gzip file"):
    idx.load_idx_dataset("fashion_mnist", str(tmp_path))


def test_missing_files_say_how_to_get_them(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    idx.load_idx_dataset("fashion_mnist", str(tmp_path / "nowhere"))
  message = str(info.value)
  for needed in (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "apt-get install dataset-fashion-mnist",
    "HYBRIDCONV_IDX_DIR",
    "--config.data.data_dir",
    str(tmp_path / "nowhere"),
  ):
    assert needed in message


def test_unknown_name():
  with pytest.raises(ValueError, match=r"'cifar10'.*\['fashion_mnist', 'mnist'\]"):
    idx.load_idx_dataset("cifar10")


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
  ds = idx.load_idx_dataset("fashion_mnist", str(FASHION_DIR))
  assert ds.train_images.shape == (60000, 28, 28, 1)
  assert ds.test_images.shape == (10000, 28, 28, 1)
  # Fashion-MNIST is balanced: 6000 / 1000 examples per class.
  np.testing.assert_array_equal(np.bincount(ds.train_labels), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(ds.test_labels), [1000] * 10)
  assert abs(ds.train_images.mean() / 255 - 0.2860) < 1e-3


def test_load_dataset_reads_idx_through_the_config(tmp_path):
  arrays = _write_dataset(tmp_path, gz=True)
  config = ml_collections.ConfigDict(dict(source="idx", name="mnist", data_dir=str(tmp_path)))
  ds = load_dataset(config)
  assert ds.name == "mnist" and ds.image_shape == (5, 4, 1)
  np.testing.assert_array_equal(ds.test_labels, arrays["t10k-labels-idx1-ubyte"])
