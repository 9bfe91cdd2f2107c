"""Checks the peer's forecast path against each artifact's golden vectors, as the prediction
service does before a version may serve: the features computed here from the raw golden bars
must equal the golden features (f32, exactly), and onnxruntime's outputs must be within the
card's tolerance, at batch 1 for every case and for the batch case.

    $(scripts/venv bench/peers/requirements.txt ~/.cache/mirai-peers-venv) bench/peers/check_forecast.py

Prints one line per version and exits non-zero on a mismatch.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import forecast

MODELS = Path(__file__).resolve().parents[2] / "services/prediction/models"


def ohlcv(bars: list[dict]) -> np.ndarray:
    return np.array(
        [(b["open"], b["high"], b["low"], b["close"], b["volume"]) for b in bars], dtype=np.float64
    )


def check(name: str, version: str) -> list[str]:
    model = forecast.load(MODELS, name, version)
    registry = json.loads((MODELS / "registry.json").read_text())
    entry = next(m for m in registry["models"] if m["name"] == name and m["version"] == version)
    golden = json.loads((MODELS / entry["golden"]).read_text())
    tolerance = golden["tolerance_abs"]
    failures, worst = [], 0.0
    for case in golden["cases"]:
        x = forecast.features(ohlcv(case["bars"]))
        expected = np.asarray(case["features"], dtype=np.float32)
        if x.shape != expected.shape or not np.array_equal(x, expected):
            failures.append(f"{case['id']}: features differ")
            continue
        out = forecast.run(model, x[np.newaxis])[0]
        diff = float(np.max(np.abs(out.astype(np.float64) - np.asarray(case["output"]))))
        worst = max(worst, diff)
        if diff > tolerance:
            failures.append(f"{case['id']}: output differs by {diff:e}")
    batch = golden["batch"]
    bars = ohlcv(batch["bars"])
    w = model.window
    xb = np.stack([forecast.features(bars[i : i + w + 1]) for i in range(batch["batch_size"])])
    out = forecast.run(model, xb).astype(np.float64)
    diff = float(np.max(np.abs(out - np.asarray(batch["outputs"]))))
    worst = max(worst, diff)
    if diff > tolerance:
        failures.append(f"batch: output differs by {diff:e}")
    print(
        f"{name} {version}: {len(golden['cases'])} cases + a batch of {batch['batch_size']}, "
        f"features equal, largest output difference {worst:.3e} (tolerance {tolerance:g})"
        + ("" if not failures else f"; FAILED: {', '.join(failures)}")
    )
    return failures


def check_post_processing() -> list[str]:
    """P(up) and the target bar on hand-worked values (those of the service's unit tests in
    domain/forecast.rs, worked out there from the split normal's definition)."""
    model = forecast.load_champion(MODELS)  # levels 0.05, 0.5, 0.95
    failures = []
    for q, expected, tol in [
        ([-0.02, 0.0, 0.02], 0.5, 1e-15),
        ([-0.01, 0.01, 0.05], 0.7945830, 1e-6),
        ([-0.5, -0.01, 0.03], 0.3404580, 1e-6),
        ([0.0, 0.02, 0.04], 0.95, 1e-10),
        ([0.01, 0.01, 0.02], 1.0, 0.0),
        ([-0.02, -0.01, -0.01], 0.0, 0.0),
    ]:
        got = forecast.p_up(model, q)
        if abs(got - expected) > tol:
            failures.append(f"p_up{q} = {got}, expected {expected}")
    friday = datetime(2020, 4, 17, 13, 30, tzinfo=timezone.utc)
    if forecast.next_session(friday) != datetime(2020, 4, 20, 13, 30, tzinfo=timezone.utc):
        failures.append("the session after a Friday is not the Monday")
    if model.interval_level() != 0.9:
        failures.append(f"interval level {model.interval_level()!r}, expected 0.9")
    print("post-processing (P(up), next session, interval level): " + ("ok" if not failures else f"FAILED: {', '.join(failures)}"))
    return failures


def main() -> int:
    registry = json.loads((MODELS / "registry.json").read_text())
    failed = [f for m in registry["models"] for f in check(m["name"], m["version"])]
    failed += check_post_processing()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
