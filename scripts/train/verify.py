"""Re-checks the committed model artifacts without retraining (run: scripts/train/verify).

For every version in services/prediction/models/registry.json:
- sha256 of model.onnx, card.json, golden.json and test_forecasts.csv against the registry and card;
- the data file's sha256 against the card;
- the ONNX graph (input/output names and shapes, LSTM nodes, metadata) against the card;
- every golden case: its bars are the data file's bars, the features recomputed from them equal
  the golden features, onnxruntime at batch 1 reproduces the golden output; the batch case at
  batch 64 too;
- onnxruntime over the whole test period reproduces test_forecasts.csv, and the metrics
  recomputed from those forecasts equal the card's.
Exits 1 with every failure listed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

import features
import train


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
            print(f"  FAIL {what}")
        return ok


def _close(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _compare_metrics(c: Checker, label: str, got, want, rel: float = 1e-9) -> None:
    if isinstance(want, dict):
        for k, v in want.items():
            _compare_metrics(c, f"{label}.{k}", got.get(k) if isinstance(got, dict) else None, v, rel)
    elif isinstance(want, (int, float)) and not isinstance(want, bool):
        ok = isinstance(got, (int, float)) and abs(got - want) <= rel * max(1.0, abs(want))
        c.check(ok, f"{label}: recomputed {got} != card {want}")


def verify_version(c: Checker, models_dir: Path, entry: dict, bars: features.Bars, data_sha: str) -> None:
    import onnx

    name, version = entry["name"], entry["version"]
    print(f"== {name} {version}")
    onnx_path = models_dir / entry["onnx"]
    card_path = models_dir / entry["card"]
    golden_path = models_dir / entry["golden"]
    for p in (onnx_path, card_path, golden_path):
        if not c.check(p.is_file(), f"{p} is missing"):
            return
    card = json.loads(card_path.read_text())
    golden = json.loads(golden_path.read_text())
    d = card_path.parent
    forecasts_path = d / card["test_forecasts"]["file"]

    onnx_sha = features.sha256_file(onnx_path)
    c.check(onnx_sha == entry["sha256"], f"{onnx_path}: sha256 {onnx_sha} != registry {entry['sha256']}")
    c.check(onnx_sha == card["onnx"]["sha256"], f"{onnx_path}: sha256 {onnx_sha} != card {card['onnx']['sha256']}")
    c.check(features.sha256_file(card_path) == entry["card_sha256"], f"{card_path}: sha256 != registry")
    golden_sha = features.sha256_file(golden_path)
    c.check(golden_sha == entry["golden_sha256"], f"{golden_path}: sha256 != registry")
    c.check(golden_sha == card["golden"]["sha256"], f"{golden_path}: sha256 != card")
    c.check(
        forecasts_path.is_file() and features.sha256_file(forecasts_path) == card["test_forecasts"]["sha256"],
        f"{forecasts_path}: missing or sha256 != card",
    )
    c.check(card["data"]["sha256"] == data_sha, f"data file sha256 {data_sha} != card {card['data']['sha256']}")
    c.check((card["name"], card["version"]) == (name, version), "card name/version != registry")
    w = card["window"]
    c.check(card["bars_needed"] == features.bars_needed(w) == golden["bars_needed"], "bars_needed disagrees")
    c.check(card["features"] == features.FEATURES, "card features != features.FEATURES (spec drift)")
    c.check(card["quantiles"] == features.QUANTILES, "card quantiles != features.QUANTILES")

    # --- graph vs card
    proto = onnx.load(str(onnx_path))
    c.check(all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer), "ONNX uses external data")
    inp, out = proto.graph.input, proto.graph.output
    c.check(len(inp) == 1 and len(out) == 1, "graph must have one input and one output")
    in_shape = train._dims(inp[0])
    out_shape = train._dims(out[0])
    c.check(inp[0].name == card["input"]["name"], f"graph input name {inp[0].name} != card")
    c.check(isinstance(in_shape[0], str) and in_shape[1:] == card["input"]["shape"][1:], f"graph input shape {in_shape} != card {card['input']['shape']}")
    c.check(out[0].name == card["output"]["name"], f"graph output name {out[0].name} != card")
    c.check(isinstance(out_shape[0], str) and out_shape[1:] == card["output"]["shape"][1:], f"graph output shape {out_shape} != card")
    c.check(inp[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT, "graph input is not float32")
    lstm = sum(1 for n in proto.graph.node if n.op_type == "LSTM")
    c.check(lstm == card["onnx"]["lstm_nodes"] and lstm > 0, f"graph has {lstm} LSTM nodes, card says {card['onnx']['lstm_nodes']}")
    meta = {p.key: p.value for p in proto.metadata_props}
    c.check(meta.get("mirai.version") == version and meta.get("mirai.window") == str(w), f"ONNX metadata {meta} != card")

    # --- golden cases
    sess = train.ort_session(onnx_path)
    tol = golden["tolerance_abs"]
    by_date = {dt: i for i, dt in enumerate(bars.date)}
    worst_feat = worst_out = 0.0
    for case in golden["cases"]:
        cb = features.Bars.from_rows(case["bars"])
        i0 = by_date.get(cb.date[0])
        same = i0 is not None and cb.rows() == bars.slice(i0, i0 + len(cb)).rows()
        c.check(same, f"{case['id']}: golden bars are not the data file's consecutive bars")
        x = features.window_features(cb, w)
        worst_feat = max(worst_feat, _close(x, case["features"]))
        y = sess.run([card["output"]["name"]], {card["input"]["name"]: x[None]})[0]
        c.check(y.shape == (1, 3), f"{case['id']}: output shape {y.shape}")
        worst_out = max(worst_out, _close(y[0], case["output"]))
        c.check(bool(np.all(np.diff(y[0]) >= 0)), f"{case['id']}: quantiles cross")
    c.check(worst_feat <= 1e-7, f"features recomputed from golden bars differ by {worst_feat}")
    c.check(worst_out <= tol, f"onnxruntime batch-1 outputs differ from golden by {worst_out}")

    gb = golden["batch"]
    bb = features.Bars.from_rows(gb["bars"])
    xb = np.stack([features.window_features(bb.slice(i, i + w + 1), w) for i in range(gb["batch_size"])])
    yb = sess.run([card["output"]["name"]], {card["input"]["name"]: xb})[0]
    worst_batch = _close(yb, gb["outputs"])
    c.check(yb.shape == (gb["batch_size"], 3), f"batch output shape {yb.shape}")
    c.check(worst_batch <= tol, f"onnxruntime batch-{gb['batch_size']} outputs differ from golden by {worst_batch}")
    print(
        f"  golden: {len(golden['cases'])} cases + batch {gb['batch_size']}; max |diff| features "
        f"{worst_feat:.1e}, outputs {worst_out:.1e}, batch {worst_batch:.1e}"
    )

    # --- the whole test period: forecasts and metrics
    ds = train.build_dataset(bars, w)
    q = train.ort_predict(sess, ds.x)
    test = np.flatnonzero(ds.split == "test")
    with open(forecasts_path, newline="") as f:
        rows = list(csv.DictReader(f))
    c.check(len(rows) == len(test), f"test_forecasts.csv has {len(rows)} rows, test split has {len(test)}")
    if len(rows) == len(test):
        c.check([r["target_date"] for r in rows] == [ds.target_date[i] for i in test], "test_forecasts dates != test split")
        stored = np.array([[float(r[k]) for k in ("q05", "q50", "q95")] for r in rows])
        worst_fc = _close(q[test], stored)
        c.check(worst_fc <= tol, f"onnxruntime test-period forecasts differ from test_forecasts.csv by {worst_fc}")
        print(f"  test period: {len(test)} forecasts reproduced, max |diff| {worst_fc:.1e}")
    evaluation, _ = train.evaluate(ds, q)
    for key in ("validation", "test", "test_by_year"):
        _compare_metrics(c, f"metrics.{key}", evaluation[key], card["metrics"][key], rel=1e-6)
    c.check(abs(evaluation["mase_scale"] - card["metrics"]["mase_scale"]) < 1e-15, "MASE scale != card")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=train.MODELS, help="models folder (default: %(default)s)")
    args = ap.parse_args(argv)
    c = Checker()
    registry_path = args.models / "registry.json"
    registry = json.loads(registry_path.read_text())
    bars = features.load_csv(train.DATA)
    data_sha = features.sha256_file(train.DATA)
    listed = {(e["name"], e["version"]) for e in registry["models"]}
    on_disk = {(p.parent.parent.name, p.parent.name) for p in args.models.glob("*/*/card.json")}
    c.check(listed == on_disk, f"registry lists {sorted(listed)}, disk has {sorted(on_disk)}")
    champ = registry["champion"]
    c.check((champ["name"], champ["version"]) in listed, f"champion {champ} is not a listed version")
    for entry in registry["models"]:
        verify_version(c, args.models, entry, bars, data_sha)
    if c.failures:
        print(f"verify: {len(c.failures)} failure(s)")
        return 1
    print(f"verify: {len(registry['models'])} versions OK, champion {champ['name']} {champ['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
