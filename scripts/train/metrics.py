"""Forecast metrics on next-day log returns, as the model card reports them.

All functions take 1-D numpy arrays of equal length: `y` the realised next-day log return,
forecasts in the same unit. The serving side's scoreboard implements the same definitions, so
each one is stated exactly in its docstring.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def _check(*arrays: np.ndarray) -> None:
    n = len(arrays[0])
    if n == 0:
        raise ValueError("metrics need at least one observation")
    for a in arrays:
        if len(a) != n:
            raise ValueError(f"length mismatch: {[len(x) for x in arrays]}")


def mae(y: np.ndarray, f: np.ndarray) -> float:
    """mean |y - f|."""
    _check(y, f)
    return float(np.mean(np.abs(y - f)))


def rmse(y: np.ndarray, f: np.ndarray) -> float:
    """sqrt(mean (y - f)^2)."""
    _check(y, f)
    return float(np.sqrt(np.mean((y - f) ** 2)))


def mase_scale(train_log_close: np.ndarray) -> float:
    """Hyndman's in-sample scale for a non-seasonal series: the mean absolute one-step change of
    the forecast series over the training period, (1/(n-1)) sum_{t=2..n} |x_t - x_{t-1}|.

    The series is x = ln(close); its one-step naive forecast (the random walk, tomorrow's price =
    today's) has error x_{t+1} - x_t = the log return, so the scale is the training split's mean
    absolute daily log return. A forecast f of the log return is a forecast x_t + f of x_{t+1}
    with the same error y - f, hence MASE = mean|y - f| / scale."""
    if len(train_log_close) < 2:
        raise ValueError("the MASE scale needs at least two training observations")
    return float(np.mean(np.abs(np.diff(train_log_close))))


def mase(y: np.ndarray, f: np.ndarray, scale: float) -> float:
    """mean |y - f| / scale (scale from `mase_scale`). Below 1: better out of sample than the
    random walk was in sample. The random walk's own MASE on the test period (f = 0) is printed
    beside it so the comparison is like for like."""
    if not scale > 0:
        raise ValueError(f"MASE scale must be > 0, got {scale}")
    return mae(y, f) / scale


def hit_rate(y: np.ndarray, f: np.ndarray) -> float:
    """Share of days where the forecast direction is right: (f > 0) == (y > 0). A forecast of
    exactly 0 counts as "not up", and so does a realised return of exactly 0."""
    _check(y, f)
    return float(np.mean((f > 0) == (y > 0)))


def always_up_hit_rate(y: np.ndarray) -> float:
    """Hit rate of the always-up baseline: share of days with y > 0."""
    _check(y)
    return float(np.mean(y > 0))


def pinball(y: np.ndarray, q: np.ndarray, tau: float) -> float:
    """Mean pinball (quantile) loss at level tau: mean max(tau (y - q), (tau - 1)(y - q))."""
    _check(y, q)
    if not 0.0 < tau < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {tau}")
    d = y - q
    return float(np.mean(np.maximum(tau * d, (tau - 1.0) * d)))


def pinball_per_day(y: np.ndarray, qs: np.ndarray, taus: list[float]) -> np.ndarray:
    """Each day's pinball loss averaged over the quantile levels (qs: [n, len(taus)]) → [n]."""
    if qs.ndim != 2 or qs.shape[1] != len(taus):
        raise ValueError(f"quantile matrix shape {qs.shape} does not match {len(taus)} levels")
    _check(y, qs)
    for tau in taus:
        if not 0.0 < tau < 1.0:
            raise ValueError(f"quantile level must be in (0, 1), got {tau}")
    t = np.asarray(taus)[None, :]
    d = y[:, None] - qs
    return np.mean(np.maximum(t * d, (t - 1.0) * d), axis=1)


def mean_pinball(y: np.ndarray, qs: np.ndarray, taus: list[float]) -> float:
    """Pinball loss averaged over days and quantile levels."""
    return float(np.mean(pinball_per_day(y, qs, taus)))


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray) -> dict:
    """Diebold–Mariano test of equal accuracy for one-step-ahead forecasts (h = 1, so the long-run
    variance is the lag-0 variance): d = loss_a - loss_b, DM = mean(d) / sqrt(var(d) / n) with
    var the population variance, two-sided p-value from the standard normal. DM < 0 means a is
    more accurate."""
    _check(loss_a, loss_b)
    d = np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64)
    var = float(np.mean((d - d.mean()) ** 2))
    if not var > 0:
        return {"statistic": 0.0, "p_value": 1.0, "n": int(len(d))}
    stat = float(d.mean() / np.sqrt(var / len(d)))
    p = 2.0 * (1.0 - NormalDist().cdf(abs(stat)))
    return {"statistic": stat, "p_value": float(p), "n": int(len(d))}


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of days with lo <= y <= hi (both ends inclusive)."""
    _check(y, lo, hi)
    return float(np.mean((lo <= y) & (y <= hi)))


def rolling_std(returns: np.ndarray, window: int) -> np.ndarray:
    """Sample standard deviation (ddof = 1) of returns[t-window+1 ..= t] for every t; NaN for
    the first window - 1 positions."""
    if window < 2:
        raise ValueError("a rolling standard deviation needs a window of at least 2")
    out = np.full(len(returns), np.nan)
    for t in range(window - 1, len(returns)):
        out[t] = np.std(returns[t - window + 1 : t + 1], ddof=1)
    return out


def gaussian_quantiles(sigma: np.ndarray, taus: list[float]) -> np.ndarray:
    """Zero-mean Gaussian quantiles sigma * Phi^-1(tau) → [n, len(taus)]."""
    z = np.array([NormalDist().inv_cdf(t) for t in taus])
    return sigma[:, None] * z[None, :]


def summary(
    y: np.ndarray,
    model_q: np.ndarray,
    gauss_q: np.ndarray,
    taus: list[float],
    scale: float,
) -> dict:
    """Every card metric for one period. Columns of the quantile matrices follow `taus`, whose
    middle entry is the median; the interval is [first, last]."""
    mid = taus.index(0.5)
    med = model_q[:, mid]
    zero = np.zeros_like(y)
    return {
        "n": int(len(y)),
        "mae": {"model": mae(y, med), "random_walk": mae(y, zero)},
        "rmse": {"model": rmse(y, med), "random_walk": rmse(y, zero)},
        "mase": {"model": mase(y, med, scale), "random_walk": mase(y, zero, scale)},
        "hit_rate": {
            "model": hit_rate(y, med),
            "always_up": always_up_hit_rate(y),
            "model_share_forecast_up": float(np.mean(med > 0)),
        },
        "pinball": {
            "model": mean_pinball(y, model_q, taus),
            "gaussian_rolling_vol": mean_pinball(y, gauss_q, taus),
        },
        "coverage_90": {
            "model": coverage(y, model_q[:, 0], model_q[:, -1]),
            "gaussian_rolling_vol": coverage(y, gauss_q[:, 0], gauss_q[:, -1]),
            "nominal": round(taus[-1] - taus[0], 10),
        },
        "diebold_mariano": {
            "abs_error_vs_random_walk": diebold_mariano(np.abs(y - med), np.abs(y)),
            "pinball_vs_gaussian_rolling_vol": diebold_mariano(
                pinball_per_day(y, model_q, taus), pinball_per_day(y, gauss_q, taus)
            ),
        },
        "mean_interval_width": {
            "model": float(np.mean(model_q[:, -1] - model_q[:, 0])),
            "gaussian_rolling_vol": float(np.mean(gauss_q[:, -1] - gauss_q[:, 0])),
        },
    }
