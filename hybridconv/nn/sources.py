"""Kernel sources: declarative descriptions of where a conv layer's kernels come from.

A source is a small frozen dataclass; :mod:`hybridconv.nn.kernel_modules` turns
it into an NNX module that produces an HWIO kernel. Keeping the description
separate from the module lets configs name sources with a string or a dict
(:func:`parse`) and lets models take one source per layer.

* :class:`Free` -- ordinary learned weights (as ``nnx.Conv``), optionally
  starting from a named bank or an array.
* :class:`Gabor` -- parametric Gabor functions whose parameters are learned.
* :class:`Fixed` -- a named bank from :mod:`hybridconv.kernels.banks`, frozen.
* :class:`Random` -- He-normal random kernels from a seed, frozen.
* :class:`Hybrid` -- output channels split into groups of the sources above.
* :class:`BankMix` -- not a kernel but a layer structure: a bank applied per
  input channel (depthwise), optional normalisation and activation, then a
  learned 1x1 mix (the strongest fixed-basis results use it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybridconv.kernels import banks
from hybridconv.kernels.gabor import GABOR_PARAMETERS

GABOR_CHANNEL_MODES = ("pair", "mix")
GABOR_INITS = ("grid", "random")
BANKMIX_NORMS = ("none", "batch")
BANKMIX_ACTIVATIONS = ("none", "relu", "abs")


def _check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
  if value not in allowed:
    raise ValueError(f"{what}={value!r} is not one of {tuple(allowed)}")


@dataclasses.dataclass(frozen=True)
class Free:
  """Learned weights; by default initialised and computed exactly as ``nnx.Conv``.

  ``init`` starts the weights elsewhere, then they are learned as usual: the
  "bank-initialised, then learned" arm of a kernel study (``'free:init=gabor'``)
  or a converted layer that keeps its weights (:mod:`hybridconv.nn.conversion`).

  Attributes:
    init: None -- LeCun-normal, as ``nnx.Conv``; a bank name of
      :mod:`hybridconv.kernels.banks` -- the exact kernel that ``Fixed(init,
      options, normalize)`` gives at the same shape (same bank, same
      normalisation, so a study compares like with like); or an HWIO array
      ``(kh, kw, cin, cout)`` used as given.
    options: keyword options of the bank (a mapping or pairs), as ``Fixed``.
    normalize: as ``Fixed.normalize``, for a bank ``init``.
  """

  init: Any = None
  options: tuple[tuple[str, Any], ...] = ()
  normalize: bool = True

  def __post_init__(self):
    options = self.options.items() if isinstance(self.options, Mapping) else self.options
    object.__setattr__(self, "options", tuple((str(k), v) for k, v in options))
    if self.init is None or isinstance(self.init, str):
      if self.init is not None:
        Fixed(self.init, self.options, self.normalize)  # the same bank check as Fixed
        allowed = banks.bank_options(self.init)
        unknown = sorted({k for k, _ in self.options} - set(allowed))
        if unknown:
          raise ValueError(
            f"Free init={self.init!r}: unknown bank option(s) {unknown}; "
            f"allowed: {sorted(allowed) if allowed else 'none'}"
          )
      elif self.options:
        raise ValueError(f"Free options={dict(self.options)} need a bank init, e.g. init='gabor'")
      return
    if self.options:
      raise ValueError("Free options apply to a bank init, not to an array init")
    object.__setattr__(self, "init", checked_kernel_array("Free init", self.init))


def checked_kernel_array(what: str, value: Any) -> np.ndarray:
  """A read-only float32 copy of a finite HWIO array, or one ``ValueError`` naming ``what``."""
  try:
    array = np.array(value, dtype=np.float32)
  except (TypeError, ValueError) as error:
    raise ValueError(
      f"{what} must be a numeric HWIO array (or a bank name), got {type(value).__name__}: {error}"
    ) from None
  if array.ndim != 4 or min(array.shape, default=0) < 1:
    raise ValueError(f"{what} must be an HWIO array (kh, kw, cin, cout), got shape {array.shape}")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{what} has {int(np.sum(~np.isfinite(array)))} NaN or infinite values")
  array.flags.writeable = False
  return array


@dataclasses.dataclass(frozen=True)
class Gabor:
  """Parametric real Gabor kernels (conventions in :mod:`hybridconv.kernels.gabor`).

  Attributes:
    learn: which of theta, frequency, sigma, gamma, psi are learned; the others
      stay at their initial values (frozen).
    init: 'grid' (orientations evenly spaced, frequencies octave spaced over
      ``frequency_range``) or 'random' (uniform orientation, log-uniform
      frequency, random phase).
    num_orientations: orientations per frequency in the grid init.
    frequency_range: (lowest, highest) initial frequency, cycles/pixel.
    frequency_bounds: (low, high) range the learned frequency is kept in by the
      constraint map; high must be below the Nyquist limit 0.5.
    bandwidth: initial width tied to frequency by this bandwidth in octaves.
    gamma: initial aspect ratio.
    psi: initial phase (grid init).
    zero_mean: remove each kernel's DC component (no response to flat regions).
    gain: learn a per-filter gain; without it every filter has unit L2 norm.
    channels: 'pair' -- one Gabor per (input, output) channel pair; 'mix' -- one
      spatial Gabor per output channel, mixed across input channels by learned
      weights (colour handled by the mix).
    init_from: None, or an HWIO array ``(kh, kw, cin, cout)`` of kernels to start
      from: the parameters are fitted to them with hybridconv's Gabor fitter,
      overriding ``init`` (:mod:`hybridconv.nn.gabor_init`; used by
      :func:`hybridconv.nn.convert`).
  """

  learn: tuple[str, ...] = ("theta", "frequency")
  init: str = "grid"
  num_orientations: int = 8
  frequency_range: tuple[float, float] = (0.05, 0.25)
  frequency_bounds: tuple[float, float] = (0.02, 0.45)
  bandwidth: float = 1.0
  gamma: float = 1.0
  psi: float = 0.0
  zero_mean: bool = True
  gain: bool = False
  channels: str = "pair"
  init_from: Any = None

  def __post_init__(self):
    if self.init_from is not None:
      object.__setattr__(self, "init_from", checked_kernel_array("Gabor init_from", self.init_from))
    object.__setattr__(self, "learn", tuple(self.learn))
    object.__setattr__(self, "frequency_range", tuple(self.frequency_range))
    object.__setattr__(self, "frequency_bounds", tuple(self.frequency_bounds))
    unknown = [p for p in self.learn if p not in GABOR_PARAMETERS]
    if unknown:
      raise ValueError(
        f"Gabor learn={self.learn!r}: unknown parameter(s) {unknown}; allowed: {GABOR_PARAMETERS}"
      )
    _check_choice("Gabor init", self.init, GABOR_INITS)
    _check_choice("Gabor channels", self.channels, GABOR_CHANNEL_MODES)
    low, high = self.frequency_range
    if not 0 < low <= high < 0.5:
      raise ValueError(
        f"Gabor frequency_range={self.frequency_range}: need 0 < lowest <= highest < 0.5 "
        "cycles/pixel (0.5 is the Nyquist limit)"
      )
    b_low, b_high = self.frequency_bounds
    if not 0 < b_low < b_high < 0.5:
      raise ValueError(
        f"Gabor frequency_bounds={self.frequency_bounds}: need 0 < low < high < 0.5 cycles/pixel "
        "(0.5 is the Nyquist limit)"
      )
    if not (b_low <= low and high <= b_high):
      raise ValueError(
        f"Gabor frequency_range={self.frequency_range} must lie inside frequency_bounds="
        f"{self.frequency_bounds}"
      )
    if self.num_orientations < 1:
      raise ValueError(f"Gabor num_orientations must be >= 1, got {self.num_orientations}")
    if self.bandwidth <= 0 or self.gamma <= 0:
      raise ValueError(
        f"Gabor bandwidth and gamma must be positive, got {self.bandwidth}, {self.gamma}"
      )


@dataclasses.dataclass(frozen=True)
class Fixed:
  """A named bank from :mod:`hybridconv.kernels.banks`, frozen.

  Output channel ``o`` uses bank filter ``o`` (the group may use fewer filters
  than the bank has, never more), applied equally to every input channel.

  Attributes:
    bank: bank name, e.g. 'gabor', 'gaussian_derivatives', 'dct', 'sobel_x'.
    options: keyword options of the bank (a mapping or pairs).
    normalize: scale each filter to unit L2 norm over (kh, kw, cin), the scale
      of a LeCun-initialised free filter, so groups of a hybrid layer start on
      an equal footing; False keeps the textbook values (averaged over input
      channels).
  """

  bank: str = "gabor"
  options: tuple[tuple[str, Any], ...] = ()
  normalize: bool = True

  def __post_init__(self):
    if self.bank not in banks.BANKS:  # fail when the config is read, not when the layer is built
      raise ValueError(f"unknown kernel bank {self.bank!r}; known banks: {', '.join(banks.BANKS)}")
    options = self.options.items() if isinstance(self.options, Mapping) else self.options
    object.__setattr__(self, "options", tuple((str(k), v) for k, v in options))


@dataclasses.dataclass(frozen=True)
class Random:
  """He-normal random kernels drawn from ``seed`` and never trained.

  ``seed=None`` (the string ``'random'``) means "the run's": the model zoo
  replaces it by a seed derived from the run's seed and the layer's name
  (:func:`hybridconv.models.layer_specs.seed_random_source`); a layer built
  directly with it draws from seed 0.
  """

  seed: int | None = None

  def __post_init__(self):
    if self.seed is not None and (
      isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0
    ):
      raise ValueError(f"Random seed must be an int >= 0 or None (the run's), got {self.seed!r}")


@dataclasses.dataclass(frozen=True)
class Hybrid:
  """Output channels split into groups, each with its own source.

  ``groups`` pairs a source with a channel count (ints adding up to the
  layer's output channels) or a fraction (floats adding up to 1; counts are
  rounded by largest remainder). Kernels are concatenated along the output
  axis in the order given and convolved in one call.
  """

  groups: tuple[tuple[Any, int | float], ...] = ((Gabor(), 0.5), (Free(), 0.5))

  def __post_init__(self):
    groups = tuple((parse(source), size) for source, size in self.groups)
    if not groups:
      raise ValueError("Hybrid needs at least one group")
    for source, size in groups:
      if isinstance(source, (Hybrid, BankMix)):
        raise ValueError(f"a Hybrid group cannot itself be {type(source).__name__}")
      if isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0:
        raise ValueError(f"Hybrid group size must be a positive int or fraction, got {size!r}")
    kinds = {isinstance(size, int) for _, size in groups}
    if len(kinds) > 1:
      raise ValueError(
        f"Hybrid group sizes must be all counts or all fractions, got {[s for _, s in groups]}"
      )
    if kinds == {False} and abs(sum(s for _, s in groups) - 1) > 1e-6:
      raise ValueError(f"Hybrid group fractions must add up to 1, got {[s for _, s in groups]}")
    object.__setattr__(self, "groups", groups)

  def counts(self, out_features: int) -> list[int]:
    """Channel count of each group for a layer with ``out_features`` outputs."""
    sizes = [size for _, size in self.groups]
    if all(isinstance(s, int) for s in sizes):
      if sum(sizes) != out_features:
        raise ValueError(
          f"Hybrid group counts {sizes} add up to {sum(sizes)}, but the layer has "
          f"{out_features} output channels"
        )
      return sizes
    exact = [s * out_features for s in sizes]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: out_features - sum(counts)]:
      counts[i] += 1
    if min(counts) < 1:
      raise ValueError(
        f"Hybrid group fractions {sizes} leave a group with no channel at {out_features} "
        "output channels; use counts or larger fractions"
      )
    return counts


@dataclasses.dataclass(frozen=True)
class BankMix:
  """Bank per input channel (depthwise), optional norm and activation, learned 1x1 mix.

  Attributes:
    bank: a :class:`Fixed`, :class:`Gabor` or :class:`Random` source for the
      depthwise bank (``Random``: spatial filters drawn once and never trained,
      recombined by the learned mix -- Gavrikov & Keuper, arXiv 2301.11360).
    num_filters: bank filters per input channel for a Gabor or random bank (a
      fixed bank uses all of its filters).
    norm: 'none' or 'batch' (BatchNorm over the bank responses).
    activation: 'none', 'relu' or 'abs' between the bank and the mix.
  """

  bank: Any = Fixed()
  num_filters: int = 16
  norm: str = "batch"
  activation: str = "none"

  def __post_init__(self):
    object.__setattr__(self, "bank", parse(self.bank))
    if not isinstance(self.bank, (Fixed, Gabor, Random)):
      raise ValueError(f"BankMix bank must be a Fixed, Gabor or Random source, got {self.bank!r}")
    _check_choice("BankMix norm", self.norm, BANKMIX_NORMS)
    _check_choice("BankMix activation", self.activation, BANKMIX_ACTIVATIONS)
    if self.num_filters < 1:
      raise ValueError(f"BankMix num_filters must be >= 1, got {self.num_filters}")


KernelSource = Free | Gabor | Fixed | Random | Hybrid | BankMix
_BY_NAME = {
  "free": Free,
  "gabor": Gabor,
  "fixed": Fixed,
  "random": Random,
  "hybrid": Hybrid,
  "bankmix": BankMix,
}
SOURCE_NAMES = tuple(_BY_NAME)


def parse(spec: Any) -> KernelSource:
  """A kernel source from a source object, a string or a dict.

  Strings: a JSON object (the dict form, e.g. for ``model.first_layer``),
  'free', 'free:init=<bank>' (free weights starting as that fixed bank, e.g.
  'free:init=gabor'), 'gabor', 'fixed' (the default Gabor bank),
  'fixed:<bank>' (e.g. 'fixed:sobel_x'), 'random', 'random:<seed>', 'hybrid' (half
  parametric Gabor, half free), 'bankmix', 'bankmix:<bank>'. Dicts name the
  source under 'source' and give its fields, e.g. ``{'source': 'gabor', 'learn':
  ['theta', 'frequency', 'sigma']}`` or ``{'source': 'hybrid', 'groups':
  [['gabor', 16], ['fixed:sobel_x', 1], ['free', 15]]}``.
  """
  if isinstance(spec, (Free, Gabor, Fixed, Random, Hybrid, BankMix)):
    return spec
  if isinstance(spec, str) and spec.lstrip().startswith("{"):
    # A dict spec written as JSON: how a config key declared as a string (such as
    # model.first_layer, or a study factor) holds a source with options.
    try:
      spec = json.loads(spec)
    except ValueError as error:
      raise ValueError(
        f"kernel source {spec!r} starts like JSON but does not parse: {error}"
      ) from error
  if isinstance(spec, str):
    name, _, argument = spec.partition(":")
    if name not in _BY_NAME:
      raise ValueError(
        f"unknown kernel source {spec!r}; allowed: {SOURCE_NAMES} (e.g. 'fixed:sobel_x')"
      )
    if not argument:
      return _BY_NAME[name]()
    if name == "fixed":
      return Fixed(bank=argument)
    if name == "bankmix":
      return BankMix(bank=Fixed(bank=argument))
    if name == "random" and argument.isdigit():
      return Random(seed=int(argument))
    if name == "free":
      key, equals, bank = argument.partition("=")
      if key == "init" and equals and bank:
        return Free(init=bank)
      raise ValueError(
        f"kernel source {spec!r}: 'free' takes 'init=<bank>' (e.g. "
        f"'free:init=gabor'), not {argument!r}; banks: {', '.join(banks.BANKS)}"
      )
    raise ValueError(f"kernel source {spec!r}: {name!r} takes no argument {argument!r}")
  if isinstance(spec, Mapping):
    fields = dict(spec)
    name = fields.pop("source", None)
    if name not in _BY_NAME:
      raise ValueError(f"kernel source dict needs 'source' in {SOURCE_NAMES}, got {name!r}")
    cls = _BY_NAME[name]
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - allowed)
    if unknown:
      raise ValueError(
        f"kernel source {name!r}: unknown field(s) {unknown}; allowed: {sorted(allowed)}"
      )
    return cls(**fields)
  raise ValueError(f"cannot read a kernel source from {spec!r} (a {type(spec).__name__})")
