"""Classic image-processing kernels: blurs, sharpening, edge and emboss filters.

Conventions (those of the whole project, see :mod:`hybridconv.kernels.gabor`):

* Arrays are indexed ``[row, column]``; ``x`` grows to the right (columns) and
  ``y`` grows **upwards** (against the row index).
* A kernel is applied by **cross-correlation**, as ``lax.conv_general_dilated``
  (and so every layer in this project) does: ``out[p] = sum_u k[u] img[p + u]``.
  The arrays below are therefore exactly the weights that multiply the pixels
  they sit over, with no flip.
* Derivative kernels respond **positively** to intensity increasing along the
  positive axis: ``sobel_x`` (and ``prewitt_x``, ``scharr_x``) to intensity
  increasing to the right, ``sobel_y`` (and ``prewitt_y``, ``scharr_y``) to
  intensity increasing **upwards**, i.e. towards row 0. Because ``y`` points
  up, ``sobel_y`` is ``[[1, 2, 1], [0, 0, 0], [-1, -2, -1]]``, the negative of
  OpenCV's ``dy`` kernel (whose ``y`` points down); ``sobel_x`` equals OpenCV's
  and ``scipy.ndimage.sobel(img, axis=1)``.
* Values are the textbook integers (Sobel, Prewitt, Scharr and the Laplacian
  are not rescaled); blurs and sharpening sum to one.

Every function returns a float32 NumPy array of shape ``(kh, kw)``. The
canonical definitions are 3x3; other sizes are handled as each docstring says,
and sizes where a kernel cannot be centred on a pixel are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from math import comb

import numpy as np

from hybridconv.kernels.gabor import kernel_size_2d
from hybridconv.kernels.options import check_odd_size

# Textbook 3x3 matrices of the kernels that have no natural larger form. For
# odd sizes above 3 they are padded with zeros around the centre.
_TEXTBOOK_3X3 = {
  "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
  "prewitt_x": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
  "prewitt_y": [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],
  "scharr_x": [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]],
  "scharr_y": [[3, 10, 3], [0, 0, 0], [-3, -10, -3]],
  "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
  "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
}


def _binomial(n: int) -> np.ndarray:
  """Row ``n - 1`` of Pascal's triangle: ``n`` binomial smoothing weights."""
  return np.array([comb(n - 1, k) for k in range(n)], dtype=np.float64)


def _central_derivative(n: int) -> np.ndarray:
  """Sobel's 1-D derivative of odd length ``n``: binomial(n - 2) * [-1, 0, 1].

  Negative on the left, positive on the right, so that correlating it with a
  signal increasing to the right is positive. For ``n = 5`` this is
  ``[-1, -2, 0, 2, 1]`` (OpenCV's ``getDerivKernels(1, 0, 5)``).
  """
  return np.convolve(_binomial(n - 2), [-1.0, 0.0, 1.0])


def _padded(name: str, kernel_size) -> np.ndarray:
  """The textbook 3x3 ``name`` placed at the centre of an odd-sized zero kernel."""
  kh, kw = check_odd_size(f"classic kernel {name!r}", kernel_size, minimum=3)
  kernel = np.zeros((kh, kw), np.float32)
  top, left = (kh - 3) // 2, (kw - 3) // 2
  kernel[top : top + 3, left : left + 3] = _TEXTBOOK_3X3[name]
  return kernel


def identity(kernel_size) -> np.ndarray:
  """Identity: 1 at the centre pixel, 0 elsewhere (any odd size, 1 included).

  Even sizes are refused: an identity between pixels would shift the image by
  half a pixel, which no zero-padded kernel can express.
  """
  kh, kw = check_odd_size("classic kernel 'identity'", kernel_size, minimum=1)
  kernel = np.zeros((kh, kw), np.float32)
  kernel[kh // 2, kw // 2] = 1.0
  return kernel


def box_blur(kernel_size) -> np.ndarray:
  """Box (mean) blur: every weight ``1 / (kh * kw)``; any size, odd or even."""
  kh, kw = kernel_size_2d(kernel_size)
  return np.full((kh, kw), 1.0 / (kh * kw), np.float32)


def gaussian_blur(kernel_size) -> np.ndarray:
  """Binomial approximation of a Gaussian blur, summing to one; any size.

  The outer product of Pascal's-triangle rows, as in the textbook 3x3
  ``[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16``. Size ``k`` approximates a
  Gaussian of standard deviation ``sqrt(k - 1) / 2`` pixels; for a chosen
  sigma use the ``'gaussian_derivatives'`` bank with ``order=0``.
  """
  kh, kw = kernel_size_2d(kernel_size)
  kernel = np.outer(_binomial(kh), _binomial(kw))
  return (kernel / kernel.sum()).astype(np.float32)


def sharpen(kernel_size) -> np.ndarray:
  """Sharpen ``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]`` (identity minus the Laplacian).

  Odd sizes above 3 get the 3x3 matrix zero-padded around the centre.
  """
  return _padded("sharpen", kernel_size)


def sobel_x(kernel_size) -> np.ndarray:
  """Sobel x-derivative ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]``, positive for rises to the right.

  Size ``(kh, kw)`` (each odd, >= 3) is the outer product of ``kh`` binomial
  smoothing weights down the columns and Sobel's ``kw``-long derivative
  ``binomial(kw - 2) * [-1, 0, 1]`` along the rows (OpenCV's construction;
  5x5 has rows ``[1, 4, 6, 4, 1]`` times ``[-1, -2, 0, 2, 1]``).
  """
  kh, kw = check_odd_size("classic kernel 'sobel_x'", kernel_size, minimum=3)
  return np.outer(_binomial(kh), _central_derivative(kw)).astype(np.float32)


def sobel_y(kernel_size) -> np.ndarray:
  """Sobel y-derivative ``[[1, 2, 1], [0, 0, 0], [-1, -2, -1]]``, positive for rises upwards.

  ``y`` points up (towards row 0), so this is OpenCV's ``dy`` kernel negated.
  Larger odd sizes are built as for :func:`sobel_x`, with the axes swapped.
  """
  kh, kw = check_odd_size("classic kernel 'sobel_y'", kernel_size, minimum=3)
  return np.outer(_central_derivative(kh)[::-1], _binomial(kw)).astype(np.float32)


def prewitt_x(kernel_size) -> np.ndarray:
  """Prewitt x-derivative ``[[-1, 0, 1]] * 3``, positive for rises to the right (padded above 3)."""
  return _padded("prewitt_x", kernel_size)


def prewitt_y(kernel_size) -> np.ndarray:
  """Prewitt y-derivative ``[[1, 1, 1], [0, 0, 0], [-1, -1, -1]]``, positive for rises upwards."""
  return _padded("prewitt_y", kernel_size)


def scharr_x(kernel_size) -> np.ndarray:
  """Scharr x-derivative ``[[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]`` (OpenCV's; padded above 3)."""
  return _padded("scharr_x", kernel_size)


def scharr_y(kernel_size) -> np.ndarray:
  """Scharr y-derivative ``[[3, 10, 3], [0, 0, 0], [-3, -10, -3]]``, positive for rises upwards."""
  return _padded("scharr_y", kernel_size)


def laplacian(kernel_size) -> np.ndarray:
  """4-neighbour Laplacian ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` (negative centre, sums to 0).

  The sign is that of the continuous Laplacian (and of the ``'log'`` bank): a
  bright spot gives a negative response at its centre. Padded above 3.
  """
  return _padded("laplacian", kernel_size)


def emboss(kernel_size) -> np.ndarray:
  """Emboss ``[[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]`` (sums to 1, so flat areas keep their value).

  Positive weights sit bottom-right: the response rises where intensity
  increases towards the bottom-right (along ``+x`` and ``-y``). Padded above 3.
  """
  return _padded("emboss", kernel_size)


CLASSIC_KERNELS: dict[str, Callable[..., np.ndarray]] = {
  "identity": identity,
  "box_blur": box_blur,
  "gaussian_blur": gaussian_blur,
  "sharpen": sharpen,
  "sobel_x": sobel_x,
  "sobel_y": sobel_y,
  "prewitt_x": prewitt_x,
  "prewitt_y": prewitt_y,
  "scharr_x": scharr_x,
  "scharr_y": scharr_y,
  "laplacian": laplacian,
  "emboss": emboss,
}
CLASSIC_NAMES: tuple[str, ...] = tuple(CLASSIC_KERNELS)
