"""Your own natural images: a folder with ``train/`` and ``val/`` of one subfolder per class.

``hybridconv train --config=configs/imagefolder.py:<source>[,resnet50]
--config.data.data_dir=/path/to/folder --workdir=runs/mine`` trains the ImageNet
recipe (AlexNet 2012 layout by default, ResNet-50 as a variant; same
optimiser, crops and flips as ``configs/imagenet.py``) on JPEG/PNG files of any
size, e.g. a manually downloaded Imagenette (``imagenette2/{train,val}``).
Class indices are the sorted folder names; they are written to
``classes.json`` in the workdir. Batch 256 (Imagenette-sized folders); when
overriding ``batch_size``, scale ``optim.learning_rate`` with it.
"""

from __future__ import annotations

from configs import imagenet


def get_config(arg: str | None = None):
  config = imagenet.get_config(arg)
  config.data.source = "imagefolder"
  config.data.name = "imagefolder"
  config.batch_size = 256
  config.eval_batch_size = 256
  # Linear scaling from the imagenet config's rate at its batch of 1024.
  config.optim.learning_rate = config.optim.learning_rate * 256 / 1024
  return config
