"""FGSM and PGD mechanics on a linear softmax model, whose input gradient has a closed form."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridconv.robustness import attacks

CLASSES, SHAPE = 5, (6, 4, 4, 2)


def _linear(params, images):
  weights, bias = params
  return images.reshape(images.shape[0], -1) @ weights + bias


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  features = int(np.prod(SHAPE[1:]))
  params = (
    jnp.asarray(rng.normal(size=(features, CLASSES)), jnp.float32),
    jnp.asarray(rng.normal(size=(CLASSES,)), jnp.float32),
  )
  images = jnp.asarray(rng.uniform(0.05, 0.95, size=SHAPE), jnp.float32)
  labels = jnp.asarray(rng.integers(0, CLASSES, size=SHAPE[0]), jnp.int32)
  return params, images, labels


def _analytic_gradient(params, images, labels):
  """d/dx of sum_i CE(W^T x_i + b, y_i) = (softmax(logits) - onehot(y)) W^T, per image."""
  weights, bias = (np.asarray(p, np.float64) for p in params)
  flat = np.asarray(images, np.float64).reshape(len(labels), -1)
  logits = flat @ weights + bias
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  probs[np.arange(len(labels)), np.asarray(labels)] -= 1.0
  return (probs @ weights.T).reshape(images.shape)


def test_fgsm_perturbation_is_eps_times_the_sign_of_the_analytic_input_gradient():
  params, images, labels = _problem()
  eps = 0.03  # images lie in [0.05, 0.95]: no clipping, the perturbation is the full step
  adversarial = attacks.fgsm(_linear, params, images, labels, eps)
  expected_sign = np.sign(_analytic_gradient(params, images, labels))
  assert np.all(expected_sign != 0)
  np.testing.assert_allclose(np.asarray(adversarial - images), eps * expected_sign, atol=1e-6)


def test_fgsm_clips_to_the_pixel_range():
  params, images, labels = _problem(1)
  adversarial = attacks.fgsm(_linear, params, images, labels, 0.5)
  assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
  assert float(jnp.max(jnp.abs(adversarial - images))) <= 0.5 + 1e-6


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_eps_zero_returns_the_images_bit_for_bit(attack):
  params, images, labels = _problem(2)
  if attack == "fgsm":
    out = attacks.fgsm(_linear, params, images, labels, 0.0)
  else:
    out = attacks.pgd_linf(_linear, params, images, labels, 0.0, jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(images))


def test_pgd_stays_in_the_eps_ball_and_the_pixel_range():
  params, _, labels = _problem(3)
  images = jnp.asarray(np.random.default_rng(3).uniform(0, 1, size=SHAPE), jnp.float32)
  eps = 8 / 255
  out = attacks.pgd_linf(_linear, params, images, labels, eps, jax.random.key(1), steps=7)
  assert float(jnp.max(jnp.abs(out - images))) <= eps + 1e-6
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert not np.array_equal(np.asarray(out), np.asarray(images))


def test_pgd_raises_the_loss_at_least_as_much_as_fgsm_on_a_linear_model():
  # For a linear model the loss is convex in x; PGD from a random start with 10 steps of
  # 2.5 eps / 10 ends at a loss at least FGSM's (which is the exact maximiser of the
  # linearised loss, so it can only be matched up to the curvature of the softmax).
  params, images, labels = _problem(4)
  eps = 4 / 255

  def loss(x):
    logits = _linear(params, x)
    return float(jnp.sum(jax.nn.logsumexp(logits, -1) - logits[jnp.arange(len(labels)), labels]))

  fgsm_images = attacks.fgsm(_linear, params, images, labels, eps)
  pgd_images = attacks.pgd_linf(_linear, params, images, labels, eps, jax.random.key(2))
  assert loss(pgd_images) >= loss(fgsm_images) - 1e-4
  assert loss(fgsm_images) > loss(images)


def test_pgd_start_depends_on_the_key_and_is_reproducible():
  params, images, labels = _problem(5)
  run = lambda seed: np.asarray(
    attacks.pgd_linf(_linear, params, images, labels, 0.05, jax.random.key(seed), steps=1)
  )
  np.testing.assert_array_equal(run(0), run(0))
  assert not np.array_equal(run(0), run(1))
