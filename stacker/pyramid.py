"""Laplacian-pyramid fusion of a focal stack, streaming one slice at a time."""

from __future__ import annotations

import numpy as np

from ._opencv import copy_where, separable

__all__ = ["PyramidFusion", "downsample", "laplacian_pyramid", "reconstruct", "upsample"]

# Burt-Adelson 5-tap binomial kernel, a = 0.375.
_KERNEL = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16


def _blur(image: np.ndarray) -> np.ndarray:
    return separable(image, _KERNEL)


def downsample(image: np.ndarray) -> np.ndarray:
    """Blur with the binomial kernel and keep every other row and column.

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray of float32
        Image to reduce.

    Returns
    -------
    smaller : ndarray of float32
        About ``(M / 2, N / 2[, C])``.
    """
    return _blur(image)[::2, ::2]


def upsample(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Interpolate a downsampled image back up to `shape`.

    Parameters
    ----------
    image : ndarray of float32
        As returned by :func:`downsample`.
    shape : tuple of int
        Target shape; rows and columns first.

    Returns
    -------
    larger : ndarray of float32
        ``(shape[0], shape[1][, C])``.
    """
    up = np.zeros((shape[0], shape[1], *image.shape[2:]), dtype=np.float32)
    up[::2, ::2] = image
    up = _blur(up)
    # Zero-insertion leaves a quarter of the samples: divide by the share of
    # the kernel that fell on them. That is 1/4 inside the frame, but more or
    # less near its edges and in frames a few pixels across, where a fixed
    # gain of 4 would make a flat image's band-pass levels non-zero.
    share = np.outer(_kept_share(shape[0]), _kept_share(shape[1]))
    up /= share.reshape(share.shape + (1,) * (up.ndim - 2))
    return up


def _kept_share(n: int) -> np.ndarray:
    """Per sample of a length-`n` axis, the kernel weight on the samples zero-insertion kept."""
    kept = np.zeros(n, dtype=np.float32)
    kept[::2] = 1
    # numpy's 'symmetric' padding is scipy's (and the filters') 'reflect'.
    padded = np.pad(kept, len(_KERNEL) // 2, mode="symmetric")
    return np.correlate(padded, _KERNEL, mode="valid")


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Laplacian pyramid: band-pass levels, finest first, then the low-pass residual.

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray
        Image as floats.
    levels : int
        Number of band-pass levels (the list has ``levels + 1`` arrays).

    Returns
    -------
    pyramid : list of ndarray of float32
        ``pyramid[i]`` has about ``(M / 2**i, N / 2**i)`` pixels.

    References
    ----------
    .. [1] P. J. Burt and E. H. Adelson, "The Laplacian pyramid as a compact
           image code", IEEE Trans. Commun. 31(4), 532-540 (1983).
           :doi:`10.1109/TCOM.1983.1095851`

    Examples
    --------
    >>> img = np.random.default_rng(0).random((37, 50))
    >>> bool(np.allclose(reconstruct(laplacian_pyramid(img, 3)), img, atol=1e-5))
    True
    """
    current = np.asarray(image, dtype=np.float32)
    pyramid = []
    for _ in range(levels):
        smaller = downsample(current)
        pyramid.append(current - upsample(smaller, current.shape))
        current = smaller
    pyramid.append(current)
    return pyramid


def reconstruct(pyramid: list[np.ndarray]) -> np.ndarray:
    """Collapse a Laplacian pyramid back into an image.

    Parameters
    ----------
    pyramid : list of ndarray
        As returned by :func:`laplacian_pyramid`.

    Returns
    -------
    image : ndarray of float32
    """
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = band + upsample(image, band.shape)
    return image


def pyramid_levels(shape: tuple[int, ...], coarsest: int = 16) -> int:
    """Number of levels that leaves the low-pass residual about `coarsest` pixels wide.

    Parameters
    ----------
    shape : tuple of int
        Image shape, rows and columns first.
    coarsest : int, optional
        Wanted size of the residual's short side.

    Returns
    -------
    levels : int
        At least 1.
    """
    return max(1, int(np.log2(max(min(shape[:2]), 2) / coarsest)) + 1)


class PyramidFusion:
    """Fuse slices by choosing, per pyramid level and pixel, the sharpest band.

    Each slice's Laplacian pyramid is compared with the running fused one:
    at each level, where the slice's focus measure (reduced to that level's
    scale by the same Gaussian pyramid) is higher, its coefficients are taken
    for all channels. Deciding every level from one robust focus measure keeps
    noise in the fine bands from winning on its own. The low-pass residual is
    the running mean of the slices. Memory: the fused pyramid and its
    energies, plus one slice's pyramid.

    Parameters
    ----------
    shape : tuple of int
        Shape of one slice, ``(M, N)`` or ``(M, N, C)``.
    levels : int, optional
        Band-pass levels; default leaves a residual about 16 pixels wide.

    References
    ----------
    .. [1] P. J. Burt and R. J. Kolczynski, "Enhanced image capture through
           fusion", ICCV 1993. :doi:`10.1109/ICCV.1993.378222`
    """

    def __init__(self, shape: tuple[int, ...], levels: int | None = None):
        self.levels = pyramid_levels(shape) if levels is None else levels
        self.fused: list[np.ndarray] | None = None
        self.energy: list[np.ndarray] = []
        self.count = 0
        self.low = float("inf")
        self.high = float("-inf")

    def update(self, image: np.ndarray, focus: np.ndarray) -> None:
        """Fold in the next slice.

        Parameters
        ----------
        image : (M, N) or (M, N, C) ndarray
            The slice as floats (integers scaled to [0, 1]).
        focus : (M, N) ndarray
            Its focus measure.
        """
        self.add(self.decompose(image, focus))

    def decompose(self, image: np.ndarray, focus: np.ndarray) -> tuple:
        """The per-slice half of :meth:`update`: pure, so it can run in a worker thread.

        Parameters
        ----------
        image : (M, N) or (M, N, C) ndarray
            The slice as floats.
        focus : (M, N) ndarray
            Its focus measure.

        Returns
        -------
        decomposed : tuple
            Laplacian pyramid, focus pyramid and the slice's value range, for :meth:`add`.
        """
        image = np.asarray(image, dtype=np.float32)
        energies = [np.asarray(focus, dtype=np.float32)]
        for _ in range(self.levels - 1):
            energies.append(downsample(energies[-1]))
        pyramid = laplacian_pyramid(image, self.levels)
        return pyramid, energies, float(image.min()), float(image.max())

    def add(self, decomposed: tuple) -> None:
        """The running half of :meth:`update`: fold in a decomposed slice.

        Parameters
        ----------
        decomposed : tuple
            As returned by :meth:`decompose`.
        """
        pyramid, energies, low, high = decomposed
        self.low, self.high = min(self.low, low), max(self.high, high)
        if self.fused is None:
            self.fused, self.energy = pyramid, energies
        else:
            for fused, best, band, energy in zip(
                self.fused[:-1], self.energy, pyramid[:-1], energies, strict=True
            ):
                won = energy > best
                copy_where(best, energy, won)
                copy_where(fused, band, won)
            self.fused[-1] += pyramid[-1]
        self.count += 1

    def result(self, value_range: tuple[float, float] | None = None) -> np.ndarray:
        """The fused image, clipped to the range of the input slices.

        Parameters
        ----------
        value_range : tuple of float, optional
            ``(low, high)`` to clip to instead of the range of the slices
            fused here (tiles of one frame share the whole stack's range).

        Returns
        -------
        fused : ndarray of float32
        """
        if self.fused is None:
            raise ValueError("no slices were fused")
        low, high = (self.low, self.high) if value_range is None else value_range
        pyramid = [*self.fused[:-1], self.fused[-1] / self.count]
        return np.clip(reconstruct(pyramid), low, high)
