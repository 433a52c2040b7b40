"""Start a parametric Gabor layer from given kernels: ``Gabor(init_from=kernels)``.

The shape parameters (theta, frequency, sigma, gamma, psi) come from
hybridconv's own Gabor fitter (:func:`hybridconv.analysis.gabor_fit.fit_gabor`),
run with the layer's own family: Gabors centred in the kernel, the layer's
frequency, sigma and gamma bounds, and a constant offset when the layer is
zero-mean (a zero-mean Gabor is a Gabor plus a constant, so the fit is then
close for kernels the layer can represent). The linear part the layer can
learn -- the per-filter ``gain`` in 'pair' mode, the colour ``mix`` in 'mix'
mode -- is then solved by least squares against the given kernels. Last,
:func:`refine` polishes every value of the layer by L-BFGS on the layer's own
kernel function: the fitter's model is a Gabor plus a constant, while the
layer's zero-mean Gabor subtracts a multiple of the envelope (Morlet
correction), so only the layer's own function can say how close it gets. The
layer then starts as close to the given kernels as its family allows.

Layering: this is the one place where ``nn`` imports ``analysis``. The fitter
is a pure function over :mod:`hybridconv.kernels` (``analysis`` imports
nothing above ``kernels``), so the import cannot form a cycle; writing a
second fitter here, or moving the fitter under ``kernels/`` while others
rework ``analysis/``, would be worse.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import Array

from hybridconv.analysis import gabor_fit
from hybridconv.kernels import constraints

# L-BFGS iterations of the final polish: enough, from the fitter's start, to
# recover noise-free Gabors' parameters to 2e-3 (tests/nn_conversion_test.py).
REFINE_STEPS = 100

# The fitter's start grid: three frequencies geometrically inside the layer's
# bounds (plus the kernel's FFT peak, which the fitter always adds).
_NUM_START_FREQUENCIES = 3


def fit_parameters(
  kernel_hwio: np.ndarray,
  *,
  channels: str,
  zero_mean: bool,
  frequency: constraints.Bounds,
  sigma: constraints.Bounds,
  gamma: constraints.Bounds,
) -> dict[str, Array]:
  """Gabor parameters fitted to ``kernel_hwio``, within the layer's bounds.

  Args:
    kernel_hwio: ``(kh, kw, cin, cout)`` kernels to start from.
    channels: 'pair' fits every ``(input, output)`` slice (parameters
      ``(cin, cout)``); 'mix' fits each filter's dominant colour component
      (parameters ``(cout,)``).
    zero_mean: the layer removes each kernel's DC, so fit a constant offset too.
    frequency, sigma, gamma: the layer's constraint bounds.

  Returns:
    Constrained values of theta, frequency, sigma, gamma and psi.

  Raises:
    ValueError: kernels too small for a Gabor fit (the fitter says how small).
  """
  starts = np.geomspace(frequency.low, frequency.high, _NUM_START_FREQUENCIES + 2)[1:-1]
  options = dict(
    frequencies=tuple(starts),
    fit_centre=False,
    fit_offset=zero_mean,
    frequency_range=(frequency.low, frequency.high),
    sigma_range=(sigma.low, sigma.high),
    gamma_range=(gamma.low, gamma.high),
  )
  mode = "per_channel" if channels == "pair" else "dominant"
  fit = gabor_fit.fit_conv_kernel(kernel_hwio, mode, **options).fit
  return {name: getattr(fit, name) for name in ("theta", "frequency", "sigma", "gamma", "psi")}


def least_squares_scale(target: Array, basis: Array, axes: tuple[int, ...]) -> Array:
  """``s`` minimising ``|target - s * basis|^2`` over ``axes`` (0 where the basis is 0)."""
  numerator = (target * basis).sum(axis=axes)
  denominator = (basis * basis).sum(axis=axes)
  return jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1), 0.0)


def refine(module: nnx.Module, target: Array, steps: int = REFINE_STEPS) -> None:
  """Moves every value of ``module`` (a kernel module) to minimise ``|module() - target|^2``.

  All of the module's variables are fitted -- learned ones and frozen ones --
  because all of them set where the layer starts.
  """
  graphdef, state = nnx.split(module)
  refined = _compiled_refine(graphdef, steps)(state, jnp.asarray(target, jnp.float32))
  # A degenerate target (e.g. all-zero kernels) can leave L-BFGS with a 0/0
  # step; then the fitter's start is kept rather than a NaN layer.
  if all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(refined)):
    nnx.update(module, refined)


@functools.lru_cache(maxsize=32)
def _compiled_refine(graphdef, steps: int):
  """The jitted L-BFGS loop for one module structure, cached so layers of one shape share it."""
  optimizer = optax.lbfgs()

  def run(state, target):
    def loss(state):
      return jnp.sum((nnx.merge(graphdef, state)().astype(jnp.float32) - target) ** 2)

    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(_, carry):
      state, opt_state = carry
      value, grad = value_and_grad(state, state=opt_state)
      updates, opt_state = optimizer.update(
        grad, opt_state, state, value=value, grad=grad, value_fn=loss
      )
      return optax.apply_updates(state, updates), opt_state

    return jax.lax.fori_loop(0, steps, step, (state, optimizer.init(state)))[0]

  return jax.jit(run)
