"""Writes the analytics crate's reference vectors from the reference libraries.

Indicators come from TA-Lib (PyPI `TA-Lib`, which bundles the TA-Lib C library), statistics
from empyrical (its maintained fork `empyrical-reloaded`), both run on the real S&P 500 daily
history committed at services/stock-data/sample/sp500-2000.csv (npm vega-datasets@3.2.1,
BSD-3-Clause). The Rust tests in services/analytics/tests/reference.rs compare every value.

Output (deterministic: rerunning with the pinned requirements rewrites identical files):
- services/analytics/tests/reference/indicators.json
- services/analytics/tests/reference/stats.json

Floats are written with Python's repr (shortest string that round-trips the float64 exactly);
NaN (TA-Lib's warm-up / lookback, empyrical's undefined values) is written as null.

Machine independence: the wheel's libta-lib 0.8.1 carries two builds of some functions
(EMA, DEMA, TEMA, MACD, BBANDS, ATR, NATR: `.default` and `.fma`, picked at load time by CPU).
Both call libm's correctly rounded fma() where they fuse, and calling each build directly
(ctypes, on the S&P 500 closes) gave identical outputs, so the vectors do not depend on the
CPU that generated them.

Run through scripts/analytics-reference/generate, which sets up the venv.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
from pathlib import Path

import bottleneck
import empyrical
import numpy as np
import pandas as pd
import talib

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "services/stock-data/sample/sp500-2000.csv"
OUT_DIR = ROOT / "services/analytics/tests/reference"

DATA_CREDIT = (
    "S&P 500 daily OHLCV 2000-01-03..2020-04-17 from the npm package vega-datasets@3.2.1 "
    "(data/sp500-2000.csv), BSD-3-Clause"
)

# TA-Lib's MA type codes for the MA types the Rust crate implements.
MA_TYPES = {"sma": talib.MA_Type.SMA, "ema": talib.MA_Type.EMA, "wma": talib.MA_Type.WMA,
            "dema": talib.MA_Type.DEMA, "tema": talib.MA_Type.TEMA}


def load_bars() -> pd.DataFrame:
    frame = pd.read_csv(SOURCE, dtype={"date": str})
    for column in ("open", "high", "low", "close", "adjclose", "volume"):
        frame[column] = frame[column].astype(np.float64)
    return frame


def series(values) -> list:
    """float64 array -> JSON list, NaN as None, every float exactly (repr)."""
    out = []
    for v in np.asarray(values, dtype=np.float64):
        out.append(None if math.isnan(v) else float(v))
    return out


def scalar(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


# === indicators ===

def indicator_cases(bars: pd.DataFrame) -> list[dict]:
    o, h, l, c, v = (bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    del o
    cases: list[tuple[str, dict, dict]] = []

    def add(name, params, outputs):
        cases.append((name, params, outputs))

    for period in (20, 200):
        add("sma", {"period": period}, {"value": talib.SMA(c, timeperiod=period)})
    # 35: a period where a fused and an unfused EMA step round differently on this data.
    for period in (12, 35, 200):
        add("ema", {"period": period}, {"value": talib.EMA(c, timeperiod=period)})
    add("wma", {"period": 20}, {"value": talib.WMA(c, timeperiod=20)})
    add("dema", {"period": 20}, {"value": talib.DEMA(c, timeperiod=20)})
    add("tema", {"period": 20}, {"value": talib.TEMA(c, timeperiod=20)})
    for period, up, dn, ma in ((20, 2.0, 2.0, "sma"), (10, 1.5, 2.5, "ema")):
        upper, middle, lower = talib.BBANDS(c, timeperiod=period, nbdevup=up, nbdevdn=dn,
                                            matype=MA_TYPES[ma])
        add("bbands", {"period": period, "nbdev_up": up, "nbdev_dn": dn, "ma_type": ma},
            {"upper": upper, "middle": middle, "lower": lower})
    for period in (14, 2):
        add("rsi", {"period": period}, {"value": talib.RSI(c, timeperiod=period)})
    for fast, slow, signal in ((12, 26, 9), (5, 35, 5)):
        macd, sig, hist = talib.MACD(c, fastperiod=fast, slowperiod=slow, signalperiod=signal)
        add("macd", {"fast_period": fast, "slow_period": slow, "signal_period": signal},
            {"macd": macd, "signal": sig, "hist": hist})
    for fk, sk, skm, sd, sdm in ((5, 3, "sma", 3, "sma"), (14, 3, "ema", 5, "wma")):
        slowk, slowd = talib.STOCH(h, l, c, fastk_period=fk, slowk_period=sk,
                                   slowk_matype=MA_TYPES[skm], slowd_period=sd,
                                   slowd_matype=MA_TYPES[sdm])
        add("stoch", {"fastk_period": fk, "slowk_period": sk, "slowk_ma_type": skm,
                      "slowd_period": sd, "slowd_ma_type": sdm},
            {"slowk": slowk, "slowd": slowd})
    add("adx", {"period": 14}, {"value": talib.ADX(h, l, c, timeperiod=14)})
    add("cci", {"period": 20}, {"value": talib.CCI(h, l, c, timeperiod=20)})
    add("mfi", {"period": 14}, {"value": talib.MFI(h, l, c, v, timeperiod=14)})
    add("obv", {}, {"value": talib.OBV(c, v)})
    add("atr", {"period": 14}, {"value": talib.ATR(h, l, c, timeperiod=14)})
    add("natr", {"period": 14}, {"value": talib.NATR(h, l, c, timeperiod=14)})
    # Simple returns are TA-Lib's ROCP: (price - previous) / previous.
    for period in (1, 5):
        add("returns", {"period": period}, {"value": talib.ROCP(c, timeperiod=period)})
    # TA-Lib has no log return; ROCR (price / previous) through numpy's natural log.
    add("log_returns", {"period": 1}, {"value": np.log(talib.ROCR(c, timeperiod=1))})

    out = []
    for name, params, outputs in cases:
        out.append({"name": name, "params": params,
                    "outputs": {k: series(vals) for k, vals in outputs.items()}})
    return out


# === statistics ===

def max_drawdown_episode(returns: np.ndarray) -> dict:
    """The deepest drawdown and how long it lasted, in bars.

    empyrical has the depth but no duration, so this is our own reference, written plainly.
    Positions index the equity curve with the starting value at 0: position k is the value
    after k returns. peak = last position at or before the trough where the curve stood at
    its running maximum; recovery = first later position back at or above that peak (None if
    it never got there); duration = recovery (or the last position) - peak.
    """
    equity = np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    running_max = np.maximum.accumulate(equity)
    drawdown = (equity - running_max) / running_max
    trough = int(np.argmin(drawdown))
    peak = int(max(k for k in range(trough + 1) if equity[k] == running_max[trough]))
    later = [k for k in range(trough + 1, len(equity)) if equity[k] >= equity[peak]]
    recovery = later[0] if later else None
    end = recovery if recovery is not None else len(equity) - 1
    return {"depth": float(drawdown[trough]), "peak": peak, "trough": trough,
            "recovery": recovery, "duration": end - peak}


def stats_reference(bars: pd.DataFrame) -> dict:
    close = bars["close"].to_numpy()
    dates = bars["date"].to_numpy()
    # empyrical.simple_returns convention: p[t] / p[t-1] - 1, first bar dropped.
    spx = np.asarray(empyrical.simple_returns(pd.Series(close)).to_numpy(), dtype=np.float64)
    # The second, related series: a 200-day trend-following rule on the same index. Long the
    # index for day t when the previous close was above its 200-day SMA (known at that close,
    # so no look-ahead), otherwise in cash earning 0. Real prices, a realistic strategy whose
    # beta to the index is well below 1 and whose drawdowns differ: a defensible pair for
    # alpha, beta and correlation when only one daily series ships with the repository.
    sma200 = talib.SMA(close, timeperiod=200)
    in_market = (close[:-1] > sma200[:-1])  # NaN comparisons are False: flat during warm-up
    trend = np.where(in_market, spx, 0.0)

    inputs = {"spx": spx, "trend": trend}
    scalars: list[dict] = []
    rolling: list[dict] = []

    def add_scalar(stat, name, params, value):
        scalars.append({"stat": stat, "series": name, "params": params, "value": scalar(value)})

    rf_daily = 0.0001  # about 2.5 % a year, per period as empyrical takes it
    for name, r in inputs.items():
        add_scalar("annual_return", name, {}, empyrical.annual_return(r))
        add_scalar("annual_volatility", name, {}, empyrical.annual_volatility(r))
        for rf in (0.0, rf_daily):
            add_scalar("sharpe_ratio", name, {"risk_free": rf}, empyrical.sharpe_ratio(r, risk_free=rf))
        for req in (0.0, rf_daily):
            add_scalar("sortino_ratio", name, {"required_return": req},
                       empyrical.sortino_ratio(r, required_return=req))
            add_scalar("downside_risk", name, {"required_return": req},
                       empyrical.downside_risk(r, required_return=req))
        add_scalar("max_drawdown", name, {}, empyrical.max_drawdown(r))
        add_scalar("calmar_ratio", name, {}, empyrical.calmar_ratio(r))
        for cutoff in (0.05, 0.01):
            add_scalar("value_at_risk", name, {"cutoff": cutoff}, empyrical.value_at_risk(r, cutoff))
            add_scalar("conditional_value_at_risk", name, {"cutoff": cutoff},
                       empyrical.conditional_value_at_risk(r, cutoff))
    for rf in (0.0, rf_daily):
        a, b = empyrical.alpha_beta(trend, spx, risk_free=rf)
        add_scalar("alpha", "trend", {"benchmark": "spx", "risk_free": rf}, a)
        add_scalar("beta", "trend", {"benchmark": "spx", "risk_free": rf}, b)
    # empyrical has no correlation; Pearson's r from numpy.
    add_scalar("correlation", "trend", {"benchmark": "spx"}, np.corrcoef(trend, spx)[0, 1])

    def pad(values, n):
        values = np.asarray(values, dtype=np.float64)
        return np.concatenate((np.full(n - len(values), np.nan), values))

    n = len(spx)
    for window in (63, 252):
        for name, r in inputs.items():
            rolling.append({"stat": "rolling_sharpe", "series": name,
                            "params": {"window": window, "risk_free": 0.0},
                            "values": series(pad(empyrical.roll_sharpe_ratio(r, window), n))})
            rolling.append({"stat": "rolling_volatility", "series": name,
                            "params": {"window": window},
                            "values": series(pad(empyrical.roll_annual_volatility(r, window), n))})
    rolling.append({"stat": "rolling_beta", "series": "trend",
                    "params": {"window": 63, "benchmark": "spx"},
                    "values": series(pad(empyrical.roll_beta(trend, spx, 63), n))})

    drawdowns = {name: max_drawdown_episode(r) for name, r in inputs.items()}
    for name, dd in drawdowns.items():
        dd["peak_date"] = str(dates[dd["peak"]])
        dd["trough_date"] = str(dates[dd["trough"]])
        dd["recovery_date"] = None if dd["recovery"] is None else str(dates[dd["recovery"]])

    return {
        "conventions": {
            "returns": "simple daily returns close[t]/close[t-1]-1 (empyrical.simple_returns); "
                       "one return fewer than closes",
            "trend": "spx return on day t when close[t-1] > talib.SMA(close, 200)[t-1], else 0.0",
            "annualization": 252,
            "risk_free": "per period (daily), subtracted from each return, as empyrical takes it",
            "value_at_risk": "numpy.percentile(returns, 100*cutoff), linear interpolation; "
                             "a return (negative = loss), not a positive loss amount",
            "conditional_value_at_risk": "mean of the lowest int((n-1)*cutoff)+1 returns",
            "rolling": "empyrical roll_* outputs (length n-window+1) padded at the front with "
                       "null to the input length",
            "max_drawdown_duration": "own reference (see max_drawdown_episode in generate.py): "
                                     "equity positions 0..=n with 0 the start; duration = "
                                     "recovery (or n) - peak, in bars",
        },
        "inputs": {k: series(v) for k, v in inputs.items()},
        "scalars": scalars,
        "rolling": rolling,
        "drawdowns": drawdowns,
    }


# === output ===

def meta(sha: str, rows: int) -> dict:
    return {
        "source": str(SOURCE.relative_to(ROOT)),
        "source_sha256": sha,
        "source_rows": rows,
        "source_credit": DATA_CREDIT,
        "generator": "scripts/analytics-reference/generate.py",
        "python": platform.python_version(),
        "versions": {
            "TA-Lib (python)": talib.__version__,
            "TA-Lib (C library)": talib.__ta_version__.decode().split(" ")[0],
            "empyrical-reloaded": empyrical.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "bottleneck": bottleneck.__version__,
        },
        "talib_settings": "compatibility default, unstable periods 0 (TA-Lib defaults)",
        "empyrical_backend": "bottleneck (sequential nanmean/nanstd)",
    }


def write(path: Path, doc: dict, list_keys: tuple[str, ...]) -> None:
    """Compact JSON, one list item per line so diffs stay readable."""
    dump = lambda obj: json.dumps(obj, separators=(",", ":"), allow_nan=False)  # noqa: E731
    lines = ["{"]
    keys = list(doc.keys())
    for i, key in enumerate(keys):
        end = "," if i + 1 < len(keys) else ""
        value = doc[key]
        if key in list_keys and isinstance(value, list):
            lines.append(f"{json.dumps(key)}:[")
            for j, item in enumerate(value):
                lines.append(dump(item) + ("," if j + 1 < len(value) else ""))
            lines.append("]" + end)
        elif key in list_keys and isinstance(value, dict):
            lines.append(f"{json.dumps(key)}:{{")
            items = list(value.items())
            for j, (k, item) in enumerate(items):
                lines.append(f"{json.dumps(k)}:{dump(item)}" + ("," if j + 1 < len(items) else ""))
            lines.append("}" + end)
        else:
            lines.append(f"{json.dumps(key)}:{dump(value)}{end}")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")


def main() -> int:
    if talib.get_compatibility() != 0:
        raise SystemExit("TA-Lib compatibility must be the default (0)")
    sha = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    bars = load_bars()
    if len(bars) < 5000:
        raise SystemExit(f"expected about 20 years of daily bars in {SOURCE}, found {len(bars)}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    m = meta(sha, len(bars))
    write(OUT_DIR / "indicators.json", {"meta": m, "cases": indicator_cases(bars)}, ("cases",))
    stats = stats_reference(bars)
    write(OUT_DIR / "stats.json", {"meta": m, **stats},
          ("inputs", "scalars", "rolling", "drawdowns"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
