"""The forecast half of the Python peer: the champion's ONNX artifact run by onnxruntime on the
latest daily bars, with the service's preprocessing and post-processing redone in numpy.

Nothing here is imported from the Rust side or from scripts/train/: it is written from what
services/prediction/src does, so that a mismatch between the two shows up as different numbers.

- Input window (services/prediction/src/domain/features.rs): the last `window + 1` daily bars,
  oldest first; feature row k uses bars k and k+1: ln(close/prev close), ln(high/close),
  ln(low/close), ln(open/prev close), ln(volume/prev volume), each computed in f64 and rounded
  once to f32. The normalisation is inside the graph (card.json: normalisation.inside_graph).
- Output: one log-return quantile per level of card.json's `quantiles`; prices are
  last_close * exp(q) (domain/forecast.rs), P(up) through the split normal the three quantiles
  pin down, the target bar is the next weekday at the same time of day.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from statistics import NormalDist

import numpy as np
import onnxruntime as ort

_NORMAL = NormalDist()


class TooFewBars(Exception):
    """The symbol has fewer daily bars than the model's window needs."""


class BadBars(Exception):
    """A bar cannot become features (a value that is not finite and > 0, or bars out of order)."""


@dataclass(frozen=True)
class Model:
    """One loaded version: its session and what the card says about its interface."""

    name: str
    version: str
    window: int
    levels: tuple[float, ...]
    lower: int  # index of the interval's lower level in `levels`
    median: int
    upper: int
    z: tuple[float, ...]  # Φ⁻¹ of each level
    input_name: str
    output_name: str
    session: ort.InferenceSession

    @property
    def bars_needed(self) -> int:
        return self.window + 1

    def interval_level(self) -> float:
        # Rounded like the card and the service (0.95 - 0.05 is 0.8999999999999999 in f64).
        return _round_half_away((self.levels[self.upper] - self.levels[self.lower]) * 1e10) / 1e10


def _round_half_away(x: float) -> float:
    """Rust's f64::round (ties away from zero); Python's round() rounds ties to even."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_champion(models_dir: Path, threads: int = 1) -> Model:
    """The registry's champion (the version the service routes every caller to while the
    traffic split is the registry's seed: champion 100 %)."""
    champion = json.loads((models_dir / "registry.json").read_text())["champion"]
    return load(models_dir, champion["name"], champion["version"], threads)


def load(models_dir: Path, name: str, version: str, threads: int = 1) -> Model:
    """One registry version, with its sha256 checked against the registry as the service does
    before serving (the golden vectors are checked by check_forecast.py, not at start)."""
    registry = json.loads((models_dir / "registry.json").read_text())
    entry = next(m for m in registry["models"] if m["name"] == name and m["version"] == version)
    onnx_path = models_dir / entry["onnx"]
    actual = _sha256(onnx_path)
    if actual != entry["sha256"]:
        raise RuntimeError(f"{onnx_path}: sha256 {actual}, the registry says {entry['sha256']}")
    card = json.loads((models_dir / entry["card"]).read_text())
    levels = tuple(float(x) for x in card["quantiles"])
    options = ort.SessionOptions()
    # One thread per worker process: uvicorn runs one process per core, and onnxruntime's
    # default (a spinning pool as wide as the machine) would have the workers fight for it.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    session = ort.InferenceSession(
        str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    find = lambda level: next(i for i, l in enumerate(levels) if abs(l - level) < 1e-12)  # noqa: E731
    return Model(
        name=card["name"],
        version=card["version"],
        window=int(card["window"]),
        levels=levels,
        lower=find(card["interval"]["lower"]),
        median=find(0.5),
        upper=find(card["interval"]["upper"]),
        z=tuple(_NORMAL.inv_cdf(level) for level in levels),
        input_name=card["input"]["name"],
        output_name=card["output"]["name"],
        session=session,
    )


def features(ohlcv: np.ndarray) -> np.ndarray:
    """Feature rows of bars[1:], shape [n - 1, 5] float32, from daily bars oldest first as an
    [n, 5] float64 array of open, high, low, close, volume."""
    if not np.all(np.isfinite(ohlcv) & (ohlcv > 0)):
        raise BadBars("every open, high, low, close and volume must be finite and > 0")
    o, h, l, c, v = ohlcv.T
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        rows = np.column_stack(
            (
                np.log(c[1:] / c[:-1]),
                np.log(h[1:] / c[1:]),
                np.log(l[1:] / c[1:]),
                np.log(o[1:] / c[:-1]),
                np.log(v[1:] / v[:-1]),
            )
        )
    if not np.all(np.isfinite(rows)):
        raise BadBars("a ratio to the previous bar is not finite")
    return rows.astype(np.float32)


def run(model: Model, window: np.ndarray) -> np.ndarray:
    """The model's log-return quantiles for windows of shape [batch, window, 5]."""
    return model.session.run([model.output_name], {model.input_name: window})[0]


def p_up(model: Model, q: list[float]) -> float:
    """P(next close > last close) under the split normal centred on the median whose two scales
    put the interval's ends exactly on their quantiles."""
    m = q[model.median]
    if m >= 0.0:
        sigma = (m - q[model.lower]) / -model.z[model.lower]
        if sigma > 0.0:
            f0 = _cdf(-m / sigma)
        else:
            f0 = 0.0 if m > 0.0 else 0.5
    else:
        sigma = (q[model.upper] - m) / model.z[model.upper]
        f0 = _cdf(-m / sigma) if sigma > 0.0 else 1.0
    return min(1.0, max(0.0, 1.0 - f0))


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def next_session(as_of: datetime) -> datetime:
    """The next weekday at the same time of day (no holiday calendar, as in the service)."""
    nxt = as_of + timedelta(days=1)
    while nxt.weekday() >= 5:
        nxt += timedelta(days=1)
    return nxt


def uuid7() -> str:
    """A time-ordered UUID (version 7), as the service's prediction ids are."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
