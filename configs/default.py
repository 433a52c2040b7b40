"""Every config key, declared once with its meaning; experiment configs start from here.

Experiment files (``configs/fashion_mnist.py`` ...) call :func:`get_config` and
change values; they never add keys, so a typo in an experiment file or in a
``--config.a.b=value`` override is an error instead of a silently ignored
setting. Epoch-valued keys may be fractional.
"""

from __future__ import annotations

import ml_collections

KERNEL_SOURCES = ("free", "gabor", "fixed", "random", "hybrid")


def parse_variant(
  arg: str | None,
  *,
  default_source: str,
  models: tuple[str, ...] = (),
  default_model: str = "",
  options: tuple[str, ...] = (),
) -> tuple[str, str, set[str]]:
  """``(kernel source, model, options)`` from a variant such as ``'gabor,resnet50'``.

  The one variant parser of every config file. Each comma-separated token is a
  first-layer kernel source, one of ``models`` or one of ``options``; at most
  one source and one model. Anything else is refused with one message listing
  what is allowed.
  """
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  sources = [t for t in tokens if t in KERNEL_SOURCES]
  chosen = [t for t in tokens if t in models]
  unknown = [t for t in tokens if t not in KERNEL_SOURCES + models + options]
  if unknown or len(sources) > 1 or len(chosen) > 1:
    allowed = [f"at most one kernel source of {KERNEL_SOURCES}"]
    allowed += [f"at most one model of {models}"] if models else []
    allowed += [f"any of the options {options}"] if options else []
    example = ",".join(["gabor", *(models or options)[-1:]])
    raise ValueError(
      f"unknown config variant {arg!r}: give {' and '.join(allowed)}, "
      f"comma-separated (e.g. {example!r})"
    )
  return (
    (sources[0] if sources else default_source),
    (chosen[0] if chosen else default_model),
    set(tokens) - set(sources) - set(chosen),
  )


def get_config() -> ml_collections.ConfigDict:
  """The defaults: Fashion-MNIST, SimpleCNN with a hybrid first layer, AdamW, on CPU."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # init, data order, augmentation, dropout, random kernels, training subset
  config.arm = ""  # a study's name for this run's arm: labels its reports, changes no training
  config.batch_size = 128  # global train batch: split over all devices of all processes
  config.eval_batch_size = 1000  # global evaluation batch (last batch padded and masked)
  # Durations ('500 steps', '2 epochs', '60000 examples', '10%' of the run): training/durations.py
  config.train_for = "3 epochs"  # training length (steps, epochs or examples; not a fraction)
  config.log_every = "50 steps"  # train scalars in metrics.jsonl and log lines (+ evals, saves)
  config.eval_every = "10%"  # evaluations (+ end); the validation split if any (test: end)
  config.cpu_devices = 0  # CPU: data-parallel devices (0 = one per core, <= 8, dividing batches)
  config.keep_host_buffers = True  # glibc: reuse large freed host buffers (see host_memory.py)
  config.compute_dtype = "float32"  # activations: 'float32' or 'bfloat16' (params stay f32)
  config.label_smoothing = 0.0  # train-loss label smoothing in [0, 1); eval loss is plain NLL
  config.nan_policy = "stop"  # non-finite loss or gradient: 'stop' the run, or 'skip' the update
  config.max_consecutive_skips = 3  # nan_policy='skip': stop after more non-finite steps in a row
  config.allow_config_change = False  # resume a workdir although seed/model/data/optim.name changed

  config.data = ml_collections.ConfigDict()
  config.data.source = "idx"  # 'idx' (IDX files), 'tfds', 'gratings' or 'imagefolder'
  config.data.name = "fashion_mnist"  # dataset, e.g. 'fashion_mnist', 'cifar10', 'imagenet2012'
  config.data.data_dir = ""  # '' = HYBRIDCONV_IDX_DIR / TFDS_DATA_DIR / packaged; imagefolder root
  config.data.pipeline = "device"  # 'device' (whole dataset in device memory) or 'streaming'
  config.data.train_size = 0  # class-balanced training subset of this many images (0 = all)
  config.data.subset_seed = -1  # seed choosing the subset (-1 = config.seed, so seeds vary it)
  config.data.validation_size = 0  # balanced hold-out of the train split for evals (0 = test)
  config.data.validation_seed = 0  # seed of the hold-out (not config.seed: the same in every run)
  config.data.prepare = False  # tfds: run download_and_prepare when the dataset is missing
  config.data.augment = ml_collections.ConfigDict()
  config.data.augment.crop_padding = 0  # random crops after zero-padding by this many pixels
  config.data.augment.horizontal_flip = False  # random left-right flips
  config.data.decode = ml_collections.ConfigDict()  # variable-size images (imagefolder, ImageNet)
  config.data.decode.image_size = 224  # side of the square train/eval crops fed to the model
  config.data.decode.eval_resize = 256  # eval: shorter side resized to this, then centre crop
  config.data.decode.crop_scale = (0.08, 1.0)  # train: random-resized crop area fraction range
  config.data.decode.crop_ratio = (3 / 4, 4 / 3)  # train: crop aspect ratio (w/h) range
  config.data.decode.workers = -1  # grain decode processes (-1 = cores - 1, 0 = threads here)
  config.data.gratings = ml_collections.ConfigDict()
  config.data.gratings.num_train = 10_000  # procedural training images
  config.data.gratings.num_test = 2_000  # procedural test images
  config.data.gratings.image_size = 32  # square image side in pixels
  config.data.gratings.task = "orientation"  # label by 'orientation' or 'frequency' bin
  config.data.gratings.num_classes = 8  # number of label bins
  config.data.gratings.noise = 0.1  # std of additive pixel noise
  config.data.gratings.envelope_sigma = 0.0  # Gaussian envelope width in pixels (0 = none)
  config.data.gratings.seed = 0  # seed of the procedural dataset (not of training)

  config.model = ml_collections.ConfigDict()
  config.model.name = "simple_cnn"  # simple_cnn, alexnet, alexnet_small, resnet20/56/18/50
  config.model.first_layer = "hybrid"  # first conv: free, gabor, fixed, random, hybrid, bankmix
  config.model.kernels = ml_collections.ConfigDict()  # conv name -> kernel source ('*' = all convs)
  config.model.width = 1.0  # channel-count multiplier
  config.model.first_kernel_size = 0  # simple_cnn: first conv's kernel side (0 = the model's 5)

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "adamw"  # 'adamw' or 'sgd'
  config.optim.learning_rate = 2e-3  # peak learning rate (after warm-up)
  config.optim.reference_batch_size = 0  # > 0: learning_rate is for this global batch, scaled
  # linearly to config.batch_size by the trainer (Goyal et al. 2017), so --config.batch_size=
  # keeps the recipe; 0: learning_rate is used as it is
  config.optim.schedule = "cosine"  # 'cosine', 'step' or 'constant' (each after linear warm-up)
  config.optim.warmup = "0.2 epochs"  # linear warm-up from zero (a duration; '0 steps' = none)
  config.optim.end_learning_rate_factor = 0.0  # cosine: final learning rate / peak
  config.optim.step_at = ("30 epochs", "60 epochs", "80 epochs")  # step: when the rate drops
  config.optim.step_factor = 0.1  # step: the multiplier
  config.optim.momentum = 0.9  # sgd: momentum (0 = none)
  config.optim.nesterov = True  # sgd: Nesterov momentum
  config.optim.b1 = 0.9  # adamw: first-moment decay
  config.optim.b2 = 0.999  # adamw: second-moment decay
  config.optim.eps = 1e-8  # adamw: denominator epsilon
  config.optim.weight_decay = 1e-4  # weights with ndim >= 2 only; never Gabor params/norms/biases
  config.optim.kernel_lr_multiplier = 10.0  # learning-rate factor for parametric (Gabor) params
  config.optim.grad_clip_norm = 0.0  # clip the global gradient norm to this (0 = off)

  config.robustness = ml_collections.ConfigDict()
  config.robustness.after_training = False  # study runner: robustness of each finished point
  config.robustness.suite = "default"  # the corruption/attack suite of `hybridconv evaluate`
  config.robustness.pgd_images = 2000  # test images attacked by FGSM/PGD (0 = all)
  config.robustness.test_images = 0  # test images for clean/corrupted accuracy (0 = all)

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every = "25%"  # save cadence (and always at the end and on SIGTERM)
  config.checkpoint.every_minutes = 10.0  # also save when this long since the last (0 = off)
  config.checkpoint.keep = 2  # keep the latest this many checkpoints
  config.checkpoint.keep_best = 1  # also keep the best this many by eval accuracy (0 = off)
  config.checkpoint.async_save = True  # write in the background after the device-to-host copy

  config.distributed = ml_collections.ConfigDict()
  config.distributed.initialize = "auto"  # jax.distributed: 'auto' (env/address), 'always', 'never'
  config.distributed.coordinator_address = ""  # 'host:port' of process 0 ('' = env / auto-detect)
  config.distributed.num_processes = -1  # -1 = auto-detect
  config.distributed.process_id = -1  # -1 = auto-detect
  config.tracking = ml_collections.ConfigDict()
  config.tracking.wandb = ml_collections.ConfigDict()
  config.tracking.wandb.mode = "offline"  # 'online', 'offline' (`wandb sync` later) or 'disabled'
  config.tracking.wandb.project = "hybridconv"  # W&B project
  config.tracking.wandb.entity = ""  # W&B user or team ('' = the account's default)
  config.tracking.wandb.name = ""  # run display name ('' = W&B picks one)
  config.tracking.wandb.group = ""  # W&B run group ('' = none; studies set their name)
  config.tracking.wandb.tags = ()  # W&B run tags (the study runner adds 'key=value' per factor)
  config.tracking.wandb.job_type = ""  # W&B job type, e.g. 'train' or 'study' ('' = none)
  config.tracking.wandb.init_timeout = 30.0  # seconds to reach W&B before going offline
  config.tracking.scalars_every = "50 steps"  # per-layer grad/param/update norms ('never': off)
  config.tracking.filters_every = "25%"  # filter summaries: step 0, each period, end ('never')
  config.tracking.gabor_fit = True  # Gabor-fit free kernels >= 5x5 in summaries (R^2 score)
  config.tracking.animation = True  # at the end, one GIF per layer from its filter PNGs
  config.tracking.log_checkpoints = False  # checkpoints to W&B as artifacts by reference
  return config


def fixed_gabor_bank(num_filters: int) -> ml_collections.ConfigDict:
  """A fixed first-layer Gabor bank of ``num_filters`` filters (4 scales x 2 phases x n/8 angles).

  The default bank has 32 filters; stems with more channels (AlexNet 96, ResNet-50
  and the small AlexNet 64) name their first conv in ``model.kernels`` with this.
  """
  if num_filters % 8:
    raise ValueError(f"fixed_gabor_bank needs a multiple of 8 filters, got {num_filters}")
  return ml_collections.ConfigDict(
    {
      "source": "fixed",
      "bank": "gabor",
      "options": {"num_orientations": num_filters // 8, "num_scales": 4},
    }
  )
