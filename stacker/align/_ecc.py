"""Forward-compositional ECC refinement of a transform between two images of one level.

Enhanced correlation coefficient maximisation (Evangelidis & Psarakis 2008,
:doi:`10.1109/TPAMI.2008.113`), with the normal equations summed from image
moments instead of Jacobian images.
"""

from __future__ import annotations

import numpy as np

from ._geometry import _footprint

_E = np.eye(6, dtype=np.float32).reshape(6, 2, 3)  # unit displacements of the six affine terms
_BASES = {
    "translation": _E[[2, 5]],
    "similarity": np.stack([_E[0] + _E[4], _E[3] - _E[1], _E[2], _E[5]]),
    "affine": _E,
}


def _ecc(ref, mov, matrix, model, max_iter, tol):
    """Refine `matrix` (this level's pixels) by forward-compositional ECC; return (matrix, rho).

    Kept over ``cv2.findTransformECC`` (affine: it has no similarity model), whose worst
    transform errors in ``python scripts/bench_quality.py --alignment-only`` are
    1.04/4.28/0.71/0.33 against 0.81/3.01/0.28/0.15 px, and which registers a pcb_petteri
    pair at 1024x768 in 98 against 48 ms.
    """
    h, w = ref.shape
    centre, half = np.array([(h - 1) / 2, (w - 1) / 2]), max(h, w) / 2
    # Each parameter's displacement is affine in (u, 1), so its Jacobian image is a fixed
    # combination of six images: gy * (ur, uc, 1) and gx * (ur, uc, 1). The normal
    # equations are built from their 6x6 Gram matrix (see _normal_sums).
    combine = _BASES[model].reshape(-1, 6).astype(np.float64)
    # Centred, normalised coordinates u keep the normal equations well conditioned.
    ur = (np.arange(h) - centre[0]) / half
    uc = (np.arange(w) - centre[1]) / half
    col_powers = np.stack([np.ones(w), uc, uc * uc], axis=1).astype(np.float32)
    row_powers = np.stack([np.ones(h), ur, ur * ur])
    corners = np.array([[-h, -h, h, h], [-w, w, -w, w], [2 * half] * 4]) / (2 * half)
    start, rho = matrix, 0.0
    for it in range(max_iter + 1):
        # Samples outside `mov` are masked out below, so no edge padding is needed.
        still = np.array_equal(matrix, np.eye(3))
        warped = mov if still else _bilinear(mov, matrix, (h, w))
        lo, hi = _footprint(matrix, (h, w), mov.shape)
        inside = (np.arange(w) >= lo[:, None]) & (np.arange(w) <= hi[:, None])
        # Only pixels whose gradient reads samples from inside `mov` count.
        valid = inside.copy()
        valid[1:] &= inside[:-1]
        valid[:-1] &= inside[1:]
        valid[:, 1:] &= inside[:, :-1]
        valid[:, :-1] &= inside[:, 1:]
        count = int(np.count_nonzero(valid))
        if count < max(0.1 * valid.size, 64):
            return start, 0.0
        t, i = (
            np.where(valid, x - np.float32(x.sum(where=valid, dtype=np.float64) / count), 0)
            for x in (ref, warped)
        )
        tn, i_n = float(np.linalg.norm(t)), float(np.linalg.norm(i))
        if min(tn, i_n) < 1e-6 * np.sqrt(count):  # featureless: nothing to register
            return start, 0.0
        ti = float(t.ravel() @ i.ravel())
        rho = ti / (tn * i_n)
        if it == max_iter:
            break
        gy, gx = np.gradient(warped)
        gy *= valid
        gx *= valid
        gram, ft, fi = _normal_sums(gy, gx, t, i, col_powers, row_powers)
        hess = combine @ gram @ combine.T
        jt = combine @ ft
        ji = combine @ fi
        try:
            hji = np.linalg.solve(hess, ji)
            # ECC's photometric scale lambda (Evangelidis & Psarakis 2008); a non-positive
            # denominator means the images are not correlated enough to climb to a maximum.
            lam_d = ti - jt @ hji
            if lam_d <= 0:
                break
            dp = np.linalg.solve(hess, (i_n**2 - ji @ hji) / lam_d * jt - ji)
        except np.linalg.LinAlgError:
            break
        d = np.tensordot(dp, _BASES[model], axes=1)  # displacement (pixels) = d @ (u, 1)
        step = np.eye(3)
        step[:2, :2] += d[:, :2] / half
        step[:2, 2] = d[:, 2] - d[:, :2] @ centre / half
        matrix = matrix @ step
        if not 0.25 < np.linalg.det(matrix[:2, :2]) < 4:  # diverged: the images do not match
            return start, 0.0
        if np.abs(d @ corners).max() < tol:
            break
    return matrix, rho


def _normal_sums(
    gy: np.ndarray,
    gx: np.ndarray,
    t: np.ndarray,
    i: np.ndarray,
    col_powers: np.ndarray,
    row_powers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gram matrix of the six Jacobian images ``g * u`` (g: gy, gx; u: ur, uc, 1), and their
    dot products with `t` and `i`.

    Each is a sum of an image (gy gy, gy gx, gx gx, g t, g i) times ``ur**p uc**q``: the
    image times the column powers, then the row powers, with no Jacobian image formed.
    """
    p, q = _POWERS[:, 0], _POWERS[:, 1]

    def moments(image: np.ndarray) -> np.ndarray:  # [p, q]: sum of image * ur**p * uc**q
        return row_powers @ (image @ col_powers).astype(np.float64)

    gram = np.empty((6, 6))
    for a, b, product in ((0, 0, gy * gy), (0, 1, gy * gx), (1, 1, gx * gx)):
        block = moments(product)[p[:, None] + p, q[:, None] + q]
        gram[3 * a : 3 * a + 3, 3 * b : 3 * b + 3] = block
        gram[3 * b : 3 * b + 3, 3 * a : 3 * a + 3] = block.T
    ft, fi = (np.concatenate([moments(g * x)[p, q] for g in (gy, gx)]) for x in (t, i))
    return gram, ft, fi


# Row and column powers of the Jacobian's coordinate factors (ur, uc, 1).
_POWERS = np.array([[1, 0], [0, 1], [0, 0]])


def _bilinear(plane: np.ndarray, a: np.ndarray, out: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of a float32 plane at ``a @ (row, col, 1)`` (0 outside), by OpenCV.

    For registration: three times faster than Pillow's, and ECC converges to
    the same transform within 1e-4 px. Sample positions are float32 maps, a
    row term plus a column term as in the stacking warp, so a pixel samples the
    same place whichever band of rows an OpenCV thread computes it in.
    ``cv2.warpAffine`` derives its positions from the first row of each
    thread's band: its last bits, and so the transforms, changed with the
    number of threads.
    """
    import cv2

    rows = np.arange(out[0], dtype=np.float64)
    cols = np.arange(out[1], dtype=np.float64)
    x, y = (
        np.add.outer(
            (a[i, 0] * rows + a[i, 2]).astype(np.float32), (a[i, 1] * cols).astype(np.float32)
        )
        for i in (1, 0)
    )
    return cv2.remap(plane, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
