"""Variable-projection Levenberg-Marquardt for Gabor fits: the numerical core.

The public entry point is :func:`hybridconv.analysis.gabor_fit.fit_gabor`,
which validates its inputs and calls :func:`compiled_fit` from here.

Model, for the kernel's pixel grid ``(x, y)`` (:func:`~hybridconv.kernels.
gabor.centred_grid`)::

    k(x, y) ~= envelope * (a cos(2 pi f x') + b sin(2 pi f x')) [+ c],
    x' = (x - cx) cos(theta) + (y - cy) sin(theta),
    envelope = exp(-(x'^2 + (gamma y')^2) / (2 sigma^2)).

``(a, b, c)`` enter linearly, so for given shape parameters ``(theta, f,
sigma, gamma[, cx, cy])`` they are the solution of a 2x2 (3x3) least-squares
problem; ``a cos u + b sin u = A cos(u + psi)`` with ``A = hypot(a, b)`` and
``psi = atan2(-b, a)``. Only the shape parameters are searched, by
Levenberg-Marquardt on the projected residual ``k - B (B^T B)^-1 B^T k``
(Golub-Pereyra variable projection), with the exact Jacobian from
``jax.jacfwd`` through the linear solve. Searching 4-6 parameters instead of
7-9 removes the amplitude/phase valleys that make plain Gabor fits stall.

Shape parameters live as raw reals mapped through
:func:`hybridconv.kernels.constraints.bounded_log` (f, sigma, gamma) and a
tanh (centre, within the kernel), so every iterate is a valid, un-aliased
Gabor and LM needs no bound handling. Every start runs a fixed number of
iterations (no data-dependent control flow), so kernels x starts batch with
``vmap`` and the whole fit is one ``jit``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import Array

from hybridconv.analysis import filter_stats
from hybridconv.kernels import constraints
from hybridconv.kernels.gabor import centred_grid

# LM damping: start, factor on rejection / acceptance, and clamp.
_LAMBDA0, _LAMBDA_UP, _LAMBDA_DOWN, _LAMBDA_MAX = 1e-2, 4.0, 0.3, 1e8
# Relative ridge on the linear (amplitude/phase/offset) normal equations: keeps
# them solvable when a basis column vanishes (e.g. the sine part as f -> 0).
_RIDGE = 1e-6
# A kernel whose centred sum of squares is below this fraction of its energy is
# constant to float32 precision: SST counts as 0 and R^2 as 0.
FLAT = 1e-10


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Hashable fit settings, validated by ``gabor_fit``; the cache key of the compiled fit.

  ``frequencies`` x ``num_orientations`` is the start grid; ``steps`` LM
  iterations run from every start and ``refine_steps`` more from the best one;
  ``frequency``, ``sigma`` and ``gamma`` bound the fitted values.
  """

  kernel_size: tuple[int, int]
  num_orientations: int
  frequencies: tuple[float, ...]
  steps: int
  refine_steps: int
  fit_centre: bool
  fit_offset: bool
  frequency: constraints.Bounds
  sigma: constraints.Bounds
  gamma: constraints.Bounds

  @property
  def num_shape(self) -> int:
    return 6 if self.fit_centre else 4

  @property
  def num_linear(self) -> int:
    return 3 if self.fit_offset else 2


def _cholesky_solve(a: Array, b: Array) -> Array:
  """Solves ``a x = b`` for a small SPD ``a`` by an unrolled Cholesky factorisation.

  Used for the 2x2 / 3x3 linear step, which ``jacfwd`` differentiates on every
  LM iteration: written out element by element, batched by ``vmap``, it is a
  few fused elementwise ops, twice as fast here as ``jnp.linalg.solve``. (For
  the 4x4 / 6x6 LM system ``jnp.linalg.solve`` is as fast and compiles faster.)
  """
  k = a.shape[-1]
  low = [[None] * k for _ in range(k)]
  for j in range(k):
    diag = a[j, j] - sum(low[j][i] ** 2 for i in range(j))
    low[j][j] = jnp.sqrt(jnp.maximum(diag, 1e-30))
    for r in range(j + 1, k):
      low[r][j] = (a[r, j] - sum(low[r][i] * low[j][i] for i in range(j))) / low[j][j]
  z = []
  for r in range(k):
    z.append((b[r] - sum(low[r][i] * z[i] for i in range(r))) / low[r][r])
  x = [None] * k
  for r in reversed(range(k)):
    x[r] = (z[r] - sum(low[i][r] * x[i] for i in range(r + 1, k))) / low[r][r]
  return jnp.stack(x)


def _shape_from_raw(raw: Array, cfg: FitConfig) -> tuple[Array, ...]:
  """Raw reals -> ``(theta, f, sigma, gamma, cx, cy)``, each within its bounds."""
  theta = raw[0]
  frequency = constraints.bounded_log(raw[1], cfg.frequency)
  sigma = constraints.bounded_log(raw[2], cfg.sigma)
  gamma = constraints.bounded_log(raw[3], cfg.gamma)
  if cfg.fit_centre:
    half_h, half_w = ((s - 1) / 2 for s in cfg.kernel_size)
    return theta, frequency, sigma, gamma, half_w * jnp.tanh(raw[4]), half_h * jnp.tanh(raw[5])
  return theta, frequency, sigma, gamma, jnp.zeros(()), jnp.zeros(())


def _basis(raw: Array, cfg: FitConfig) -> Array:
  """Linear-parameter basis ``(kh*kw, 2 or 3)``: envelope x cos, envelope x sin [, 1]."""
  theta, frequency, sigma, gamma, cx, cy = _shape_from_raw(raw, cfg)
  x, y = centred_grid(cfg.kernel_size)
  x, y = x.ravel() - cx, y.ravel() - cy
  cos_t, sin_t = jnp.cos(theta), jnp.sin(theta)
  x_rot = x * cos_t + y * sin_t
  y_rot = -x * sin_t + y * cos_t
  envelope = jnp.exp(-(x_rot**2 + (gamma * y_rot) ** 2) / (2 * sigma**2))
  phase = 2 * jnp.pi * frequency * x_rot
  columns = [envelope * jnp.cos(phase), envelope * jnp.sin(phase)]
  if cfg.fit_offset:
    columns.append(jnp.ones_like(x))
  return jnp.stack(columns, axis=1)


def _linear_solve(basis: Array, target: Array) -> Array:
  """Least-squares coefficients of ``target`` on the basis columns (ridge-regularised)."""
  gram = basis.T @ basis
  ridge = _RIDGE * jnp.trace(gram) / gram.shape[0] + 1e-20
  return _cholesky_solve(gram + ridge * jnp.eye(gram.shape[0]), basis.T @ target)


def _residual(raw: Array, target: Array, cfg: FitConfig) -> Array:
  """Variable-projection residual: target minus its best fit for these shape parameters."""
  basis = _basis(raw, cfg)
  return target - basis @ _linear_solve(basis, target)


def _levenberg_marquardt(
  raw: Array, target: Array, cfg: FitConfig, steps: int
) -> tuple[Array, Array]:
  """``steps`` damped Gauss-Newton iterations from ``raw``; returns (raw, cost)."""

  def with_aux(p):
    r = _residual(p, target, cfg)
    return r, r

  def step(_, carry):
    p, lam, cost = carry
    jac, r = jax.jacfwd(with_aux, has_aux=True)(p)
    normal = jac.T @ jac
    scale = jnp.diag(normal) + 1e-6 * jnp.trace(normal) / normal.shape[0] + 1e-12
    delta = -jnp.linalg.solve(normal + lam * jnp.diag(scale), jac.T @ r)
    trial = p + delta
    r_trial = _residual(trial, target, cfg)
    trial_cost = r_trial @ r_trial
    accept = trial_cost < cost
    p = jnp.where(accept, trial, p)
    cost = jnp.where(accept, trial_cost, cost)
    lam = jnp.clip(jnp.where(accept, lam * _LAMBDA_DOWN, lam * _LAMBDA_UP), 1e-9, _LAMBDA_MAX)
    return p, lam, cost

  r0 = _residual(raw, target, cfg)
  raw, _, cost = jax.lax.fori_loop(0, steps, step, (raw, jnp.asarray(_LAMBDA0), r0 @ r0))
  return raw, cost


def _raw_from_shape(theta, frequency, sigma, gamma, cx, cy, cfg: FitConfig) -> Array:
  """Inverse of :func:`_shape_from_raw` (values clipped just inside their bounds)."""
  columns = [
    theta,
    constraints.bounded_log_inverse(frequency, cfg.frequency),
    constraints.bounded_log_inverse(sigma, cfg.sigma),
    constraints.bounded_log_inverse(gamma, cfg.gamma),
  ]
  if cfg.fit_centre:
    half_h, half_w = ((s - 1) / 2 for s in cfg.kernel_size)
    columns.append(jnp.arctanh(jnp.clip(cx / half_w, -0.95, 0.95)))
    columns.append(jnp.arctanh(jnp.clip(cy / half_h, -0.95, 0.95)))
  return jnp.stack(columns, axis=-1)


def _starts(kernels: Array, cfg: FitConfig) -> Array:
  """Raw starting points ``(n, 1 + orientations * frequencies, num_shape)``."""
  n = kernels.shape[-1]
  peak = filter_stats.spectral_peak(kernels)
  grid_theta = jnp.arange(cfg.num_orientations, dtype=jnp.float32) * (jnp.pi / cfg.num_orientations)
  grid_theta, grid_freq = jnp.meshgrid(grid_theta, jnp.asarray(cfg.frequencies), indexing="ij")

  def with_peak(peak_value, grid):
    return jnp.concatenate([peak_value[:, None], jnp.broadcast_to(grid.ravel(), (n, grid.size))], 1)

  theta = with_peak(peak.theta, grid_theta)
  freq = with_peak(peak.frequency, grid_freq)
  freq = jnp.clip(freq, cfg.frequency.low, cfg.frequency.high)
  # One-octave bandwidth, but no wider than the kernel can show.
  sigma = jnp.clip(0.56 / freq, cfg.sigma.low, max(cfg.kernel_size) / 2.5)
  gamma = jnp.clip(1.0, cfg.gamma.low, cfg.gamma.high) * jnp.ones_like(theta)
  # Energy centroid: where a Gabor's envelope peaks, wherever the filter sits.
  x, y = centred_grid(cfg.kernel_size)
  energy = kernels**2
  total = jnp.maximum(energy.sum(axis=(0, 1)), 1e-30)
  cx = jnp.sum(energy * x[..., None], axis=(0, 1)) / total
  cy = jnp.sum(energy * y[..., None], axis=(0, 1)) / total
  cx, cy = (jnp.broadcast_to(c[:, None], theta.shape) for c in (cx, cy))
  return _raw_from_shape(theta, freq, sigma, gamma, cx, cy, cfg)


def _fit_normalised(kernels: Array, cfg: FitConfig) -> dict[str, Array]:
  """The traced fit of ``(kh, kw, n)`` kernels; returns fields of shape ``(n,)``."""
  scale = jnp.sqrt(jnp.mean(kernels**2, axis=(0, 1)))
  scale = jnp.where(scale > 0, scale, 1.0)
  kernels = kernels / scale
  targets = kernels.reshape(-1, kernels.shape[-1]).T  # (n, kh*kw)
  starts = _starts(kernels, cfg)
  search = functools.partial(_levenberg_marquardt, cfg=cfg, steps=cfg.steps)
  raw, cost = jax.vmap(jax.vmap(search, (0, None)), (0, 0))(starts, targets)
  best = jnp.take_along_axis(raw, jnp.argmin(cost, axis=1)[:, None, None], axis=1)[:, 0]
  refine = functools.partial(_levenberg_marquardt, cfg=cfg, steps=cfg.refine_steps)
  raw, sse = jax.vmap(refine)(best, targets)
  return _finish(raw, sse, targets, scale, cfg)


def _finish(
  raw: Array, sse: Array, targets: Array, scale: Array, cfg: FitConfig
) -> dict[str, Array]:
  """Linear parameters, canonical (theta, psi), and R^2 from the best raw shapes."""
  theta, frequency, sigma, gamma, cx, cy = jax.vmap(lambda p: _shape_from_raw(p, cfg))(raw)
  coef = jax.vmap(lambda p, t: _linear_solve(_basis(p, cfg), t))(raw, targets)
  a, b = coef[:, 0], coef[:, 1]
  offset = coef[:, 2] * scale if cfg.fit_offset else jnp.zeros_like(a)
  psi = jnp.arctan2(-b, a)  # a cos(u) + b sin(u) = A cos(u + psi)
  turns = jnp.floor(theta / jnp.pi)
  theta = theta - turns * jnp.pi
  # float32 rounding can land a tiny negative theta exactly on pi: one more turn.
  turns = jnp.where(theta >= jnp.pi, turns + 1, turns)
  theta = jnp.where(theta >= jnp.pi, 0.0, theta)
  psi = jnp.where(jnp.mod(turns, 2) == 1, -psi, psi)
  sst = jnp.sum((targets - targets.mean(axis=1, keepdims=True)) ** 2, axis=1)
  flat = sst <= FLAT * jnp.sum(targets**2, axis=1) + 1e-30
  r2 = jnp.where(flat, 0.0, 1.0 - sse / jnp.where(flat, 1.0, sst))
  return dict(
    theta=theta,
    frequency=frequency,
    sigma=sigma,
    gamma=gamma,
    psi=constraints.wrap_phase(psi),
    amplitude=jnp.hypot(a, b) * scale,
    offset=offset,
    centre_x=cx,
    centre_y=cy,
    r2=r2,
  )


@functools.lru_cache(maxsize=32)
def compiled_fit(cfg: FitConfig):
  """One jitted fit per settings (and, through jit's own cache, per batch size)."""
  return jax.jit(functools.partial(_fit_normalised, cfg=cfg))
