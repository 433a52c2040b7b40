"""Your own natural images: a folder with ``train/`` and ``val/`` of one subfolder per class.

``hybridconv train --config=configs/imagefolder.py:<source>[,resnet50]
--config.data.data_dir=/path/to/folder --workdir=runs/mine`` trains the ImageNet
recipe (AlexNet 2012 layout by default, ResNet-50 as a variant; same
optimiser, crops and flips as ``configs/imagenet.py``) on JPEG/PNG files of any
size, e.g. a manually downloaded Imagenette (``imagenette2/{train,val}``).
Class indices are the sorted folder names; they are written to
``classes.json`` in the workdir. Batch 256 (Imagenette-sized folders); the
learning rate follows ``batch_size`` (``optim.reference_batch_size``).
"""

from __future__ import annotations

from configs import imagenet


def get_config(arg: str | None = None):
  config = imagenet.get_config(arg)
  config.data.source = "imagefolder"
  config.data.name = "imagefolder"
  config.batch_size = 256
  config.eval_batch_size = 256
  return config
