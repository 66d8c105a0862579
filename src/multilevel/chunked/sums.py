"""Per-group sums over rows, and how the sums of two sets of rows combine. Pure NumPy.

The collapsed Gaussian likelihood needs cross-products summed within each group of one
grouping factor (Z_j'Z_j, Z_j'X_j, Z_j'e_j) and over all rows (X'X, X'y, y'y). This module
is their one home: the in-memory statistics (``backends.gaussian_collapsed``) and the
out-of-core ones (chunk by chunk, then merged) are computed by the same functions, so the
two agree to the last digit wherever they sum the same rows.

A *partial* is what one chunk (or any set of rows) contributes::

    {"rows": int, "missing": {column: count}, "missing_rows": int,
     "infinite_y": int, "sums": dict | None}

``sums`` is None when the rows are refused (missing or infinite values: only the counts
matter then) or hold no rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from multilevel.shape_buckets import pad_groups

# the sums that add up across chunks as they are (the moments merge by ``merge``)
_ADDITIVE = ("XtX", "Xty", "yy", "ZtZ", "ZtX", "Zty")


def group_sums(codes: np.ndarray, weights: np.ndarray, levels: int) -> np.ndarray:
    """(levels,) the sum of ``weights`` over the rows of each group (``codes`` (n,)).

    Examples
    --------
    >>> group_sums(np.array([0, 2, 0]), np.array([1.0, 2.0, 3.0]), 3)
    array([4., 0., 2.])
    """
    return np.bincount(codes, weights=weights, minlength=levels)


def group_cross_products(
    codes: np.ndarray, A: np.ndarray, B: np.ndarray, levels: int
) -> np.ndarray:
    """(levels, a, b): per-group sums of A[:, i] * B[:, j], one pass per column pair.

    ``A`` (n, a) and ``B`` (n, b) share rows. When ``B is A`` the result is symmetric and
    only the upper triangle is summed (the mirrored products are equal to the last bit:
    floating-point multiplication commutes).

    Examples
    --------
    >>> Z = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])
    >>> group_cross_products(np.array([0, 0, 1]), Z, Z, 2)[0]
    array([[ 2.,  5.],
           [ 5., 13.]])
    """
    out = np.empty((levels, A.shape[1], B.shape[1]))
    for i in range(A.shape[1]):
        for j in range(i if B is A else 0, B.shape[1]):
            out[:, i, j] = group_sums(codes, A[:, i] * B[:, j], levels)
            if B is A:
                out[:, j, i] = out[:, i, j]
    return out


def group_products(codes: np.ndarray, A: np.ndarray, v: np.ndarray, levels: int) -> np.ndarray:
    """(levels, a): per-group sums of A[:, i] * v, e.g. Z_j'e_j for every group j.

    Examples
    --------
    >>> group_products(np.array([0, 1, 1]), np.ones((3, 1)), np.array([1.0, 2.0, 3.0]), 2)
    array([[1.],
           [5.]])
    """
    return np.stack([group_sums(codes, A[:, i] * v, levels) for i in range(A.shape[1])], -1)


def mean_y(chunk: pd.DataFrame, response: str) -> float:
    """The mean of the finite numbers in ``chunk[response]`` (0 when there are none)."""
    y = pd.to_numeric(chunk[response], errors="coerce").to_numpy(dtype=float)
    y = y[np.isfinite(y)]
    return float(y.mean()) if y.size else 0.0


def no_rows() -> dict:
    """The partial of no rows: adds nothing when merged."""
    return {"rows": 0, "missing": {}, "missing_rows": 0, "infinite_y": 0, "sums": None}


def refused(partial: dict) -> bool:
    """Whether these rows hold missing or infinite values (the data will be refused)."""
    return bool(partial["missing"] or partial["infinite_y"])


def matrix_sums(
    y: np.ndarray, X: np.ndarray, Z: np.ndarray, codes: np.ndarray, levels: int, shift: float
) -> dict:
    """Float64 sums of one chunk's rows: y (n,), X (n, p), Z (n, q), group codes (n,).

    y is centred on ``shift`` in the cross-products (y'y of y ~ 1e4 + N(0, 1) would lose
    8 digits); ``mean`` and ``m2`` (sum of squared deviations) are the moments of the
    columns of [y, X, Z], and ``xmin``/``xmax`` those of X (to find constant columns).
    """
    yc = y - shift
    W = np.column_stack([y, X, Z])  # moments of y, X and Z columns
    mean = W.mean(axis=0)
    return {
        "XtX": X.T @ X,
        "Xty": X.T @ yc,
        "yy": float(yc @ yc),
        "ZtZ": group_cross_products(codes, Z, Z, levels),  # (L, q, q)
        "ZtX": group_cross_products(codes, Z, X, levels),  # (L, q, p)
        "Zty": group_products(codes, Z, yc, levels).reshape(levels, Z.shape[1]),  # (L, q)
        "mean": mean,
        "m2": ((W - mean) ** 2).sum(axis=0),
        "xmin": X.min(axis=0),
        "xmax": X.max(axis=0),
    }


def merge(a: dict, b: dict) -> dict:
    """The partial of two sets of rows together (associative: any reduction tree works)."""
    missing = dict(a["missing"])
    for col, k in b["missing"].items():
        missing[col] = missing.get(col, 0) + k
    out = {
        "rows": a["rows"] + b["rows"],
        "missing": missing,
        "missing_rows": a["missing_rows"] + b["missing_rows"],
        "infinite_y": a["infinite_y"] + b["infinite_y"],
        "sums": None,
    }
    sa, sb = a["sums"], b["sums"]
    if missing or out["infinite_y"]:
        return out  # the data will be refused: counts are all that matter now
    if sa is None or sb is None:  # an empty partition adds nothing
        out["sums"] = sb if a["rows"] == 0 else sa if b["rows"] == 0 else None
        return out
    na, nb = a["rows"], b["rows"]
    n = na + nb
    delta = sb["mean"] - sa["mean"]  # Chan et al.: means and squared deviations combined
    sums = {k: sa[k] + sb[k] for k in _ADDITIVE}
    sums["mean"] = sa["mean"] + delta * (nb / n)
    sums["m2"] = sa["m2"] + sb["m2"] + delta**2 * (na * nb / n)
    sums["xmin"] = np.minimum(sa["xmin"], sb["xmin"])
    sums["xmax"] = np.maximum(sa["xmax"], sb["xmax"])
    out["sums"] = sums
    return out


def collapsed_statistics(sums: dict, n: int, shift: float, intercept: int | None) -> dict:
    """The collapsed sampler's statistics from merged sums of ``n`` rows.

    What ``gaussian_collapsed.sufficient_statistics`` returns for the same rows in
    memory: beta0, ee, Xe, XtX, ZtZ, ZtX, Zte, n, the group dimension padded to
    ``bucket(L)``. ``shift`` is where y was centred; ``intercept`` the position of the
    intercept column (which absorbs the shift), None without one.
    """
    p = sums["XtX"].shape[0]
    A, b = sums["XtX"], sums["Xty"]
    if p:
        # Normal equations, equilibrated. In memory beta0 comes from lstsq on X itself;
        # both are the least-squares solution. ee, Xe and Zte below are exact sums for
        # whichever beta0 is reported, so the statistics stay consistent with each other
        # even where the two beta0 differ in their last digits.
        d = np.sqrt(np.diag(A))
        d = np.where(d > 0, d, 1.0)
        beta = np.linalg.lstsq(A / np.outer(d, d), b / d, rcond=None)[0] / d
    else:
        beta = np.zeros(0)
    ee = max(sums["yy"] - 2 * beta @ b + beta @ A @ beta, 0.0)
    beta0 = beta.copy()
    if intercept is not None:
        beta0[intercept] += shift  # y - c = X beta'  <=>  y = X (beta' + c e_Intercept)
    return {
        "beta0": beta0,
        "ee": float(ee),
        "Xe": b - A @ beta,
        "XtX": A,
        # group dimension padded with empty groups as sufficient_statistics pads it
        "ZtZ": pad_groups(sums["ZtZ"]),
        "ZtX": pad_groups(sums["ZtX"]),
        "Zte": pad_groups(sums["Zty"] - sums["ZtX"] @ beta),
        "n": float(n),
    }


def moments(sums: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (ddof=0) of each column of [y, X, Z] from merged sums."""
    return sums["mean"], sums["m2"] / n
