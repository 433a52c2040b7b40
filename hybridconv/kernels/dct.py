"""2-D DCT-II basis (the fixed basis of Harmonic Networks and JPEG).

The orthonormal DCT-II basis function of frequency ``(u, v)`` (``u`` down the
rows, ``v`` along the columns) on a ``kh x kw`` kernel is

    b_uv[m, n] = a(u, kh) a(v, kw) cos(pi (2m + 1) u / (2 kh)) cos(pi (2n + 1) v / (2 kw)),

with ``a(0, N) = sqrt(1 / N)`` and ``a(k, N) = sqrt(2 / N)`` otherwise. The
sample points ``(2m + 1) / (2 kh)`` are pixel centres, the same points as the
project's centred grid (``m + 1/2 = y-offset measured from the top edge``). The
``kh * kw`` functions form an orthonormal basis, so correlating an image patch
with ``b_uv`` gives its orthonormal DCT coefficient (``scipy.fft.dctn(...,
norm='ortho')``). Each ``b_uv`` is symmetric or antisymmetric under an up-down
flip (as ``u`` is even or odd) and under a left-right flip (as ``v`` is);
``b_00`` is the constant ``1 / sqrt(kh kw)``.
"""

from __future__ import annotations

import numpy as np

from hybridconv.kernels.gabor import kernel_size_2d
from hybridconv.kernels.options import check_int


def zigzag_order(kh: int, kw: int) -> list[tuple[int, int]]:
  """Frequencies ``(u, v)`` in JPEG's zig-zag (low-frequency first) order.

  Anti-diagonals ``u + v = s`` in increasing ``s``; along odd diagonals ``u``
  increases, along even ones it decreases, as in the JPEG standard's 8x8 scan
  ``(0,0), (0,1), (1,0), (2,0), (1,1), (0,2), (0,3), ...``; rectangular sizes
  skip the frequencies that do not exist.
  """
  order = []
  for s in range(kh + kw - 1):
    diagonal = [(u, s - u) for u in range(kh) if 0 <= s - u < kw]
    order.extend(diagonal if s % 2 else diagonal[::-1])
  return order


def _dct_1d(n: int) -> np.ndarray:
  """Orthonormal 1-D DCT-II basis: ``[frequency, sample]``, shape ``(n, n)``."""
  k = np.arange(n)[:, None]
  m = np.arange(n)[None, :]
  basis = np.cos(np.pi * (2 * m + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
  basis[0] /= np.sqrt(2.0)
  return basis


def dct_bank(kernel_size, *, num: int | None = None) -> np.ndarray:
  """The first ``num`` 2-D DCT-II basis functions in zig-zag order.

  Args:
    kernel_size: ``k`` or ``(kh, kw)``, any positive size.
    num: how many basis functions, 1 to ``kh * kw``; ``None`` for all of them
      (a complete orthonormal basis).

  Returns:
    float32 ``(kh, kw, num)``; filter ``k`` is ``b_uv`` for the ``k``-th
    ``(u, v)`` of :func:`zigzag_order`, so filter 0 is the constant (DC) one.
  """
  kh, kw = kernel_size_2d(kernel_size)
  if num is not None:
    num = check_int("num", num, minimum=1, maximum=kh * kw)
  rows, cols = _dct_1d(kh), _dct_1d(kw)
  frequencies = zigzag_order(kh, kw)[:num]
  kernels = [np.outer(rows[u], cols[v]) for u, v in frequencies]
  return np.stack(kernels, axis=-1).astype(np.float32)
