"""Writes what the Rust service reads: card.json, MODEL_CARD.md, golden.json, registry.json.

Pure functions of the numbers the trainer measured; the human card is rendered from card.json,
so the two cannot disagree."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

import features
import registry
from features import QUANTILES

CARD_SCHEMA = 1
GOLDEN_TOLERANCE = 1e-5


def write_json(path: Path, obj) -> None:
    """Pretty JSON whose leaves stay on one line: a bar, a feature row or a flat list is one
    line, so a golden file reads (and diffs) one bar or row per line."""
    path.write_text(_tidy(obj, 0) + "\n")


def _is_leafy(v) -> bool:
    if isinstance(v, dict):
        return all(not isinstance(x, (dict, list)) for x in v.values())
    if isinstance(v, list):
        return all(not isinstance(x, (dict, list)) for x in v)
    return True


def _tidy(v, depth: int) -> str:
    if _is_leafy(v):
        return json.dumps(v, allow_nan=False, separators=(", ", ": "))
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(v, dict):
        items = [f"{inner}{json.dumps(k)}: {_tidy(x, depth + 1)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [f"{inner}{_tidy(x, depth + 1)}" for x in v]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "os": platform.platform()}


def _f32_list(a: np.ndarray) -> list:
    """f32 values as exact JSON numbers (the f64 that equals each f32)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64).tolist()


# === golden vectors ===========================================================================


def golden_vectors(name: str, spec, ds, sess) -> dict:
    """~20 single windows (raw bars, Python features, onnxruntime batch-1 output) chosen to cover
    ordinary and extreme days in every split, plus one batch of 64 consecutive windows."""
    w = spec.window
    bars = ds.bars
    pos = {int(t): i for i, t in enumerate(ds.origins)}
    test_idx = np.flatnonzero(ds.split == "test")
    val_idx = np.flatnonzero(ds.split == "validation")
    picks: list[tuple[int, str]] = [
        (int(ds.origins[0]), "first origin with a full window (training split)"),
        (int(ds.origins[int(np.argmin(ds.y))]), "largest one-day fall in the data as target"),
        (int(ds.origins[int(np.argmax(ds.y))]), "largest one-day rise in the data as target"),
        (int(ds.origins[val_idx[0]]), "first validation target"),
        (int(ds.origins[val_idx[len(val_idx) // 2]]), "middle of the validation split"),
        (int(ds.origins[test_idx[0]]), "first test target"),
    ]
    for k in np.linspace(1, len(test_idx) - 1, 13).astype(int)[:-1]:
        picks.append((int(ds.origins[test_idx[k]]), "evenly spaced test target"))
    picks.append((int(ds.origins[test_idx[-1]]), "last test target"))
    picks.append((len(bars) - 1, "latest bar: the forecast the service would serve now (no target yet)"))

    cases = []
    seen = set()
    for t, why in picks:
        if t in seen:
            continue
        seen.add(t)
        window_bars = bars.slice(t - w, t + 1)
        x = features.window_features(window_bars, w)
        if t in pos:
            np.testing.assert_array_equal(x, ds.x[pos[t]])
        out = sess.run(["quantiles"], {"features": x[None]})[0]
        has_target = t + 1 < len(bars)
        cases.append(
            {
                "id": f"origin-{bars.date[t]}",
                "why": why,
                "origin_date": bars.date[t],
                "target_date": bars.date[t + 1] if has_target else None,
                "next_log_return": float(np.log(bars.close[t + 1] / bars.close[t])) if has_target else None,
                "bars": window_bars.rows(),
                "features": _f32_list(x),
                "output": _f32_list(out[0]),
            }
        )

    b = 64
    last = len(bars) - 1
    first_origin = last - b + 1
    batch_bars = bars.slice(first_origin - w, last + 1)
    xb = np.stack([features.window_features(batch_bars.slice(i, i + w + 1), w) for i in range(b)])
    outb = sess.run(["quantiles"], {"features": xb})[0]
    row_of = {bars.date[first_origin + i]: i for i in range(b)}
    single_vs_batch = max(
        (
            float(np.max(np.abs(np.array(c["output"]) - outb[row_of[c["origin_date"]]])))
            for c in cases
            if c["origin_date"] in row_of
        ),
        default=0.0,
    )
    return {
        "model": name,
        "version": spec.version,
        "window": w,
        "bars_needed": features.bars_needed(w),
        "input": {"name": "features", "dtype": "float32"},
        "output": {"name": "quantiles", "dtype": "float32", "quantiles": QUANTILES},
        "tolerance_abs": GOLDEN_TOLERANCE,
        "how": (
            "Each case: compute features from `bars` (exactly bars_needed bars, oldest first) "
            "with the card's feature formulas in f64, round to f32, compare with `features`; "
            "run the model on them at batch 1, compare with `output` (q05, q50, q95). "
            "Outputs are onnxruntime's, single-threaded CPU."
        ),
        "cases": cases,
        "batch": {
            "batch_size": b,
            "how": f"window i (0-based) is bars[i .. i + {w + 1}) of `bars`; its output is outputs[i]",
            "origin_dates": [bars.date[first_origin + i] for i in range(b)],
            "bars": batch_bars.rows(),
            "outputs": _f32_list(outb),
            "max_abs_diff_vs_single_cases": single_vs_batch,
        },
    }


# === card =====================================================================================


def build_card(
    *,
    name,
    spec,
    created_at,
    frameworks,
    graph,
    onnx_path: Path,
    golden_path: Path,
    forecasts_path: Path,
    data,
    splits,
    normalisation,
    training,
    evaluation,
    parity,
    machine,
    max_batch,
    gauss_window,
) -> dict:
    w = spec["window"]
    f = features.N_FEATURES
    shape_in, shape_out = graph["graph_input"]["shape"], graph["graph_output"]["shape"]
    if len(shape_in) != 3 or not isinstance(shape_in[0], str) or shape_in[1:] != [w, f]:
        raise RuntimeError(f"graph input shape {shape_in} is not [batch, {w}, {f}] with a symbolic batch")
    if len(shape_out) != 2 or not isinstance(shape_out[0], str) or shape_out[1] != 3:
        raise RuntimeError(f"graph output shape {shape_out} is not [batch, 3] with a symbolic batch")
    expected_in = ["batch", w, f]
    expected_out = ["batch", 3]
    hyper = {k: v for k, v in spec.items() if k not in ("version", "window", "seed")}
    hyper.update(
        {
            "optimizer": "Adam",
            "loss": "mean pinball loss over the 3 quantile levels, target divided by target_scale",
            "early_stopping": "best validation pinball epoch, stop after `patience` epochs without improvement",
            "target_scale": training["target_scale"],
        }
    )
    card = {
        "schema_version": CARD_SCHEMA,
        "name": name,
        "version": spec["version"],
        "created_at": created_at,
        "description": (
            f"Quantile LSTM ({spec['layers']} layer(s) x {spec['hidden']} units) forecasting the 5 %, 50 % "
            f"and 95 % quantiles of the next-day log return of the S&P 500 index's close from the last "
            f"{w} days of OHLCV-derived features. Trained on one series (the index); applying it to "
            f"individual stocks is outside what it was trained and tested on."
        ),
        "frameworks": frameworks,
        "onnx": {
            "file": onnx_path.name,
            "sha256": features.sha256_file(onnx_path),
            "bytes": onnx_path.stat().st_size,
            "exporter": "torch.onnx.export(dynamo=True, external_data=False), example batch 2",
            **{k: graph[k] for k in ("opset", "ir_version", "ops", "lstm_nodes")},
            "metadata_props": ["mirai.model", "mirai.version", "mirai.window", "mirai.features", "mirai.quantiles", "mirai.data_sha256"],
        },
        "input": {
            "name": graph["graph_input"]["name"],
            "shape": expected_in,
            "dtype": "float32",
            "batch_symbol": graph["graph_input"]["shape"][0],
            "batch_range": [1, max_batch],
            "layout": "[batch, day (oldest first), feature (order of `features`)]",
        },
        "output": {
            "name": graph["graph_output"]["name"],
            "shape": expected_out,
            "dtype": "float32",
            "layout": "[batch, quantile (order of `quantiles`)]",
            "unit": "log return: ln(close[t+1] / close[t])",
            "monotone": "q05 <= q50 <= q95 by construction (median +/- softplus offsets)",
        },
        "quantiles": QUANTILES,
        "interval": {"lower": QUANTILES[0], "upper": QUANTILES[-1], "nominal_coverage": 0.9},
        "window": w,
        "bars_needed": features.bars_needed(w),
        "bars_rule": (
            f"exactly {features.bars_needed(w)} consecutive daily bars of one series, oldest first, the last "
            f"being the forecast origin t; feature row k (0-based, k < {w}) uses bars k (previous) and k+1"
        ),
        "features": features.FEATURES,
        "feature_arithmetic": (
            "parse prices and volume as f64, compute each ln ratio in f64, round the result to f32 "
            "(round to nearest); every value must be finite and > 0, otherwise refuse the window"
        ),
        "normalisation": {
            "inside_graph": True,
            "formula": "(x - mean) / std per feature, f32, before the LSTM",
            "computed_on": "feature rows of the training split's days (2000-01-04..2015-12-31), population std",
            **normalisation,
        },
        "target": "next-day log return of close",
        "target_formula": "ln(close[t+1] / close[t]), t = the window's last bar",
        "data": data,
        "splits": splits,
        "seed": spec["seed"],
        "deterministic": "torch.use_deterministic_algorithms(True), fixed seeds, 1 CPU thread",
        "hyperparameters": hyper,
        "training": {
            "seconds": training["seconds"],
            "epochs_run": training["epochs_run"],
            "best_epoch": training["best_epoch"],
            "best_validation_pinball_scaled": training["best_validation_pinball_scaled"],
            "device": "cpu",
            "torch_threads": 1,
            "machine": machine,
        },
        "metrics": {
            "computed_from": "onnxruntime outputs of model.onnx (the served artifact), not torch",
            "definitions": {
                "error": "y - q50, y = realised next-day log return",
                "mae": "mean |y - q50|",
                "rmse": "sqrt(mean (y - q50)^2)",
                "mase": (
                    "mean |y - f| / s, s = (1/(n-1)) sum |ln close[t] - ln close[t-1]| over the training "
                    "split's closes (Hyndman's in-sample one-step naive scale, = mean |daily log return| "
                    "2000-01-04..2015-12-31)"
                ),
                "random_walk": "tomorrow's price = today's, i.e. a log-return forecast of 0",
                "hit_rate": "share of days with (q50 > 0) == (y > 0); 0 counts as not up",
                "always_up": "hit rate of always forecasting up = share of days with y > 0",
                "pinball": "mean over days and the 3 levels of max(tau (y - q), (tau - 1)(y - q))",
                "gaussian_rolling_vol": (
                    f"zero-mean Gaussian with sigma = sample std (ddof 1) of the last {gauss_window} daily "
                    "log returns up to and including day t; quantiles sigma * Phi^-1(tau)"
                ),
                "coverage_90": "share of days with q05 <= y <= q95",
                "diebold_mariano": (
                    "h = 1 Diebold-Mariano test on daily loss differences d = loss_model - loss_baseline: "
                    "DM = mean(d) / sqrt(var(d) / n), population variance, two-sided normal p-value"
                ),
            },
            "mase_scale": evaluation["mase_scale"],
            "validation": evaluation["validation"],
            "test": evaluation["test"],
            "test_by_year": evaluation["test_by_year"],
        },
        "parity": {"torch_vs_onnxruntime_max_abs": parity},
        "golden": {"file": golden_path.name, "sha256": features.sha256_file(golden_path), "tolerance_abs": GOLDEN_TOLERANCE},
        "test_forecasts": {
            "file": forecasts_path.name,
            "sha256": features.sha256_file(forecasts_path),
            "columns": "origin_date, target_date, next_log_return (f64), q05, q50, q95 (f32 as %.9g), gaussian_sigma",
            "note": "every test-period forecast behind the metrics above, from onnxruntime",
        },
    }
    card["verdict"] = verdict(card["metrics"]["test"])
    return card


def verdict(m: dict) -> list[str]:
    """Plain sentences, one per comparison, saying whether the model beats the baseline."""

    def rel(a, b):
        return f"{(a / b - 1) * 100:+.2f} %"

    dm = m["diebold_mariano"]
    dm_of = {"mae": dm["abs_error_vs_random_walk"], "pinball": dm["pinball_vs_gaussian_rolling_vol"]}
    out = []
    for key, label, base, base_label in [
        ("mae", "MAE", "random_walk", "the random walk"),
        ("rmse", "RMSE", "random_walk", "the random walk"),
        ("mase", "MASE", "random_walk", "the random walk"),
        ("pinball", "Mean pinball loss", "gaussian_rolling_vol", "the rolling-volatility Gaussian"),
    ]:
        a, b = m[key]["model"], m[key][base]
        sentence = f"{label}: model {a:.6g} vs {base_label} {b:.6g} ({rel(a, b)}): " + (
            "lower, so it beats it" if a < b else "does NOT beat it"
        )
        if key in dm_of:
            p = dm_of[key]["p_value"]
            sentence += (
                f"; Diebold-Mariano p = {p:.3f}, significant at 5 %"
                if p < 0.05
                else f"; but Diebold-Mariano p = {p:.3f}: NOT significant at 5 %, no real difference"
            )
        if key == "mase" and a > 1 and b > 1:
            sentence += (
                "; both above 1 because the test days (with March 2020) move more than the "
                "training period's average day"
            )
        out.append(sentence + ".")
    a, b = m["hit_rate"]["model"], m["hit_rate"]["always_up"]
    out.append(
        f"Directional hit rate: model {a:.2%} vs always-up {b:.2%}: "
        + ("beats it." if a > b else "does NOT beat it.")
    )
    c, g, nom = m["coverage_90"]["model"], m["coverage_90"]["gaussian_rolling_vol"], m["coverage_90"]["nominal"]
    closer = abs(c - nom) < abs(g - nom)
    out.append(
        f"90 % interval coverage: model {c:.2%} vs nominal {nom:.0%} (Gaussian baseline {g:.2%}): "
        + ("closer to nominal than the baseline" if closer else "NOT closer to nominal than the baseline")
        + (", under-covers." if c < nom else ", over-covers." if c > nom else ".")
    )
    return out


# === human card ===============================================================================


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _metrics_table(m: dict) -> list[str]:
    r = lambda v: f"{v:.6f}"  # noqa: E731
    p = lambda v: f"{v:.2%}"  # noqa: E731
    lines = [
        _row(["metric (next-day log return)", "model", "baseline", "baseline is"]),
        _row(["---", "---:", "---:", "---"]),
        _row(["MAE of median", r(m["mae"]["model"]), r(m["mae"]["random_walk"]), "random walk (0)"]),
        _row(["RMSE of median", r(m["rmse"]["model"]), r(m["rmse"]["random_walk"]), "random walk (0)"]),
        _row(["MASE", f"{m['mase']['model']:.4f}", f"{m['mase']['random_walk']:.4f}", "random walk (0)"]),
        _row(["directional hit rate", p(m["hit_rate"]["model"]), p(m["hit_rate"]["always_up"]), "always up"]),
        _row(["mean pinball loss", r(m["pinball"]["model"]), r(m["pinball"]["gaussian_rolling_vol"]), "20-day vol Gaussian"]),
        _row(["90 % interval coverage", p(m["coverage_90"]["model"]), p(m["coverage_90"]["gaussian_rolling_vol"]), "20-day vol Gaussian (nominal 90 %)"]),
        _row(["mean interval width", r(m["mean_interval_width"]["model"]), r(m["mean_interval_width"]["gaussian_rolling_vol"]), "20-day vol Gaussian"]),
        _row(["Diebold-Mariano, |error| vs RW", f"DM {m['diebold_mariano']['abs_error_vs_random_walk']['statistic']:.3f}", f"p = {m['diebold_mariano']['abs_error_vs_random_walk']['p_value']:.3f}", "DM < 0: model better"]),
        _row(["Diebold-Mariano, pinball vs Gaussian", f"DM {m['diebold_mariano']['pinball_vs_gaussian_rolling_vol']['statistic']:.3f}", f"p = {m['diebold_mariano']['pinball_vs_gaussian_rolling_vol']['p_value']:.3f}", "DM < 0: model better"]),
    ]
    return lines


def render_model_card(card: dict) -> str:
    m = card["metrics"]
    s = card["splits"]
    L = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        "Generated by `scripts/train/train` from `card.json` (same numbers; do not edit by hand).",
        "",
        card["description"],
        "",
        "## Against the baselines (test period; plainly where it does NOT beat one)",
        "",
        *[f"- {v}" for v in card["verdict"]],
        "",
        "## Interface",
        "",
        f"- Input `{card['input']['name']}`: {card['input']['dtype']} `{card['input']['shape']}` "
        f"(batch 1..{card['input']['batch_range'][1]}), raw features, {card['input']['layout']}.",
        f"- Output `{card['output']['name']}`: {card['output']['dtype']} `{card['output']['shape']}`, "
        f"quantiles {card['quantiles']} of {card['output']['unit']}; {card['output']['monotone']}.",
        f"- Window {card['window']} feature rows from **{card['bars_needed']} bars**: {card['bars_rule']}.",
        f"- Normalisation inside the graph: {card['normalisation']['formula']}; statistics from "
        f"{card['normalisation']['computed_on']}.",
        f"- ONNX: opset {card['onnx']['opset']}, {card['onnx']['lstm_nodes']} `LSTM` node(s), ops "
        f"{', '.join(card['onnx']['ops'])}; {card['onnx']['bytes']:,} bytes, sha256 `{card['onnx']['sha256']}`.",
        "",
        "## Features (column order)",
        "",
        _row(["#", "name", "formula", "train mean", "train std"]),
        _row(["---:", "---", "---", "---:", "---:"]),
        *[
            _row([i, f["name"], f"`{f['formula']}`", f"{card['normalisation']['mean'][i]:.6g}", f"{card['normalisation']['std'][i]:.6g}"])
            for i, f in enumerate(card["features"])
        ],
        "",
        f"Arithmetic: {card['feature_arithmetic']}.",
        "",
        f"Target: {card['target']}, `{card['target_formula']}`.",
        "",
        "## Data and splits",
        "",
        f"`{card['data']['file']}`: {card['data']['series']}, {card['data']['rows']:,} bars "
        f"{card['data']['first_date']}..{card['data']['last_date']}, from {card['data']['source']}; "
        f"sha256 `{card['data']['sha256']}`.",
        "",
        _row(["split", "rule", "targets", "rows"]),
        _row(["---", "---", "---", "---:"]),
        *[
            _row([k, s[k]["rule"], f"{s[k]['target_from']}..{s[k]['target_to']}", s[k]["rows"]])
            for k in ("train", "validation", "test")
        ],
        "",
        s["note"],
        "",
        "## Training",
        "",
        f"- {card['training']['seconds']} s on {card['training']['machine']['cpu']} "
        f"({card['training']['torch_threads']} torch thread, load from other work on the machine not controlled), {card['training']['epochs_run']} epochs, "
        f"best epoch {card['training']['best_epoch']}; seed {card['seed']}; {card['deterministic']}.",
        f"- Hyperparameters: "
        + ", ".join(f"{k} = {v}" for k, v in card["hyperparameters"].items()),
        f"- Frameworks: " + ", ".join(f"{k} {v}" for k, v in card["frameworks"].items()) + ".",
        f"- torch vs onnxruntime on every window: max |diff| = {card['parity']['torch_vs_onnxruntime_max_abs']:.2e}.",
        "",
        f"## Test period ({s['test']['target_from']}..{s['test']['target_to']}, {m['test']['n']} days)",
        "",
        *_metrics_table(m["test"]),
        "",
        "### By year (test)",
        "",
        _row(["year", "days", "MAE model / RW", "MASE model / RW", "hit model / always-up", "pinball model / Gaussian", "coverage model / Gaussian"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
        *[
            _row(
                [
                    y,
                    v["n"],
                    f"{v['mae']['model']:.5f} / {v['mae']['random_walk']:.5f}",
                    f"{v['mase']['model']:.3f} / {v['mase']['random_walk']:.3f}",
                    f"{v['hit_rate']['model']:.1%} / {v['hit_rate']['always_up']:.1%}",
                    f"{v['pinball']['model']:.6f} / {v['pinball']['gaussian_rolling_vol']:.6f}",
                    f"{v['coverage_90']['model']:.1%} / {v['coverage_90']['gaussian_rolling_vol']:.1%}",
                ]
            )
            for y, v in m["test_by_year"].items()
        ],
        "",
        f"## Validation period ({s['validation']['target_from']}..{s['validation']['target_to']}, {m['validation']['n']} days)",
        "",
        *_metrics_table(m["validation"]),
        "",
        "## Metric definitions",
        "",
        *[f"- **{k}**: {v}" for k, v in m["definitions"].items()],
        f"- MASE scale s = {m['mase_scale']:.8f}.",
        "",
        f"Every test-period forecast behind these numbers is in `{card['test_forecasts']['file']}`.",
        "",
        "## Golden vectors",
        "",
        f"`{card['golden']['file']}` (sha256 `{card['golden']['sha256']}`): raw bars, the features Python "
        f"computed and onnxruntime's outputs; the serving side must match to {card['golden']['tolerance_abs']:g}.",
        "",
    ]
    return "\n".join(L)


# === registry =================================================================================


def write_registry(models_dir: Path) -> dict:
    """Rebuilds registry.json from every `<name>/<version>/card.json` on disk."""
    entries = []
    for card_path in sorted(models_dir.glob("*/*/card.json")):
        card = json.loads(card_path.read_text())
        d = card_path.parent
        rel = lambda p: str(p.relative_to(models_dir))  # noqa: E731
        onnx_path = d / card["onnx"]["file"]
        golden_path = d / card["golden"]["file"]
        entries.append(
            {
                "name": card["name"],
                "version": card["version"],
                "onnx": rel(onnx_path),
                "sha256": features.sha256_file(onnx_path),
                "bytes": onnx_path.stat().st_size,
                "card": rel(card_path),
                "card_sha256": features.sha256_file(card_path),
                "golden": rel(golden_path),
                "golden_sha256": features.sha256_file(golden_path),
                "window": card["window"],
                "bars_needed": card["bars_needed"],
                "input": {"name": card["input"]["name"], "shape": card["input"]["shape"]},
                "output": {"name": card["output"]["name"], "shape": card["output"]["shape"]},
                "validation_pinball": card["metrics"]["validation"]["pinball"]["model"],
            }
        )
    document = registry.assemble(entries, str(models_dir))
    write_json(models_dir / "registry.json", document)
    return document
