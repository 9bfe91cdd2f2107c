"""Bars and the feature specification shared by training, golden vectors, verification and the
benchmark.

This module is the reference the Rust serving side reproduces, so it is written to be read as a
specification: every feature is a log ratio of two raw values, computed in f64 and rounded once
to f32 at the end. Nothing here looks at more than one previous bar, so a day's feature row never
changes when the window slides (the serving side may cache rows per symbol).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Column order of the model input's last axis. Changing it is a new model version.
FEATURES: list[dict[str, str]] = [
    {
        "name": "log_return",
        "formula": "ln(close[t] / close[t-1])",
    },
    {
        "name": "log_high_over_close",
        "formula": "ln(high[t] / close[t])",
    },
    {
        "name": "log_low_over_close",
        "formula": "ln(low[t] / close[t])",
    },
    {
        "name": "log_open_over_prev_close",
        "formula": "ln(open[t] / close[t-1])",
    },
    {
        "name": "log_volume_change",
        "formula": "ln(volume[t] / volume[t-1])",
    },
]
N_FEATURES = len(FEATURES)

#: Quantile levels of the model output's last axis, in order.
QUANTILES = [0.05, 0.5, 0.95]

TARGET = "next-day log return of close: ln(close[t+1] / close[t]), t = the window's last bar"


class BarError(ValueError):
    """A bar sequence that cannot be turned into features (wrong length, non-positive value)."""


@dataclass(frozen=True)
class Bars:
    """Daily bars of one series in ascending date order, as parsed from the CSV (f64)."""

    date: list[str]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.date)

    def slice(self, start: int, stop: int) -> "Bars":
        return Bars(
            self.date[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
        )

    def rows(self) -> list[dict]:
        """Bars as JSON-ready dicts (the golden-vector format)."""
        return [
            {
                "date": self.date[i],
                "open": float(self.open[i]),
                "high": float(self.high[i]),
                "low": float(self.low[i]),
                "close": float(self.close[i]),
                "volume": int(self.volume[i]),
            }
            for i in range(len(self))
        ]

    @staticmethod
    def from_rows(rows: list[dict]) -> "Bars":
        return Bars(
            [r["date"] for r in rows],
            np.array([r["open"] for r in rows], dtype=np.float64),
            np.array([r["high"] for r in rows], dtype=np.float64),
            np.array([r["low"] for r in rows], dtype=np.float64),
            np.array([r["close"] for r in rows], dtype=np.float64),
            np.array([r["volume"] for r in rows], dtype=np.float64),
        )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_csv(path: Path) -> Bars:
    """Reads `date,open,high,low,close,adjclose,volume` (adjclose is ignored: it equals close in
    the shipped S&P 500 file, and the service's bars carry no adjusted close)."""
    dates: list[str] = []
    cols: dict[str, list[float]] = {k: [] for k in ("open", "high", "low", "close", "volume")}
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.DictReader(f), start=2):
            try:
                values = {k: float(row[k]) for k in cols}
            except (KeyError, TypeError, ValueError) as e:
                raise BarError(f"{path}:{line_no}: unreadable row {row!r}: {e}") from e
            dates.append(row["date"])
            for k, v in values.items():
                cols[k].append(v)
    if dates != sorted(dates) or len(set(dates)) != len(dates):
        raise BarError(f"{path}: dates are not strictly ascending")
    bars = Bars(dates, *(np.array(cols[k], dtype=np.float64) for k in cols))
    _check_positive(bars, 0)
    return bars


def _check_positive(bars: Bars, offset: int) -> None:
    for name in ("open", "high", "low", "close", "volume"):
        values = getattr(bars, name)
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
        if bad.size:
            i = int(bad[0])
            raise BarError(
                f"bar {offset + i} ({bars.date[i]}): {name} = {values[i]!r}, must be finite and > 0"
            )


def feature_rows(bars: Bars) -> np.ndarray:
    """Feature rows for bars[1:], shape [len(bars) - 1, F], f32.

    Row i describes day t = i + 1 and uses bars t and t-1 only. Computed in f64, then rounded
    once to f32 (round-to-nearest-even, as `as f32` in Rust)."""
    if len(bars) < 2:
        raise BarError(f"need at least 2 bars for one feature row, got {len(bars)}")
    _check_positive(bars, 0)
    prev_close = bars.close[:-1]
    close = bars.close[1:]
    cols = [
        np.log(close / prev_close),
        np.log(bars.high[1:] / close),
        np.log(bars.low[1:] / close),
        np.log(bars.open[1:] / prev_close),
        np.log(bars.volume[1:] / bars.volume[:-1]),
    ]
    return np.stack(cols, axis=1).astype(np.float32)


def bars_needed(window: int) -> int:
    """Raw bars one window of `window` feature rows needs: one extra for the first previous close."""
    return window + 1


def window_features(bars: Bars, window: int) -> np.ndarray:
    """The model input for one forecast: exactly `window + 1` consecutive bars → [window, F] f32."""
    if len(bars) != bars_needed(window):
        raise BarError(f"a window of {window} needs exactly {bars_needed(window)} bars, got {len(bars)}")
    return feature_rows(bars)


def log_returns(close: np.ndarray) -> np.ndarray:
    """ln(close[t] / close[t-1]) for t = 1..n-1, f64."""
    return np.log(close[1:] / close[:-1])

