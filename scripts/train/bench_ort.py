"""Times onnxruntime on a committed artifact, single-threaded, at batch 1 and 64, and prints JSON.

The inputs are the artifact's own golden windows (batch 1: the first golden case; batch 64: the
golden batch case's 64 windows, features computed by features.py), so a tract benchmark that
reads the same golden.json runs on identical tensors and the numbers compare side by side.

    scripts/train/bench [--runs 2000] [services/prediction/models/spx-lstm/1.1.0 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import artifacts
import features
import train


def inputs(version_dir: Path) -> tuple[dict, dict[int, np.ndarray]]:
    card = json.loads((version_dir / "card.json").read_text())
    golden = json.loads((version_dir / card["golden"]["file"]).read_text())
    w = card["window"]
    x1 = np.asarray(golden["cases"][0]["features"], dtype=np.float32)[None]
    bb = features.Bars.from_rows(golden["batch"]["bars"])
    x64 = np.stack([features.window_features(bb.slice(i, i + w + 1), w) for i in range(golden["batch"]["batch_size"])])
    return card, {1: x1, 64: x64}


def time_runs(sess, in_name: str, out_name: str, x: np.ndarray, runs: int, warmup: int) -> dict:
    feed = {in_name: x}
    for _ in range(warmup):
        sess.run([out_name], feed)
    samples = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        sess.run([out_name], feed)
        samples[i] = time.perf_counter_ns() - t0
    ms = samples / 1e6
    return {
        "runs": runs,
        "warmup": warmup,
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "min_ms": round(float(ms.min()), 4),
        "windows_per_s_at_p50": round(x.shape[0] / (float(np.percentile(ms, 50)) / 1e3), 1),
    }


def main(argv: list[str]) -> int:
    import onnxruntime

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", type=Path, help="version folders (default: every registry entry)")
    ap.add_argument("--runs", type=int, default=2000, help="timed runs at batch 1 (batch 64 gets runs/10, at least 100)")
    ap.add_argument("--warmup", type=int, default=100)
    args = ap.parse_args(argv)
    dirs = args.dirs
    if not dirs:
        registry = json.loads((train.MODELS / "registry.json").read_text())
        dirs = [train.MODELS / e["card"] for e in registry["models"]]
        dirs = [p.parent for p in dirs]
    results = []
    for d in dirs:
        card, xs = inputs(d)
        onnx_path = d / card["onnx"]["file"]
        sess = train.ort_session(onnx_path)  # 1 intra-op and 1 inter-op thread, sequential
        res = {
            "model": card["name"],
            "version": card["version"],
            "artifact": str(onnx_path.resolve().relative_to(train.REPO)),
            "sha256": features.sha256_file(onnx_path),
            "window": card["window"],
            "input": f"[b, {card['window']}, {features.N_FEATURES}] f32 from golden.json",
            "batches": {},
        }
        for b, x in xs.items():
            runs = args.runs if b == 1 else max(100, args.runs // 10)
            res["batches"][str(b)] = time_runs(sess, card["input"]["name"], card["output"]["name"], x, runs, args.warmup)
        results.append(res)
    print(
        json.dumps(
            {
                "runtime": "onnxruntime",
                "onnxruntime": onnxruntime.__version__,
                "threads": {"intra_op": 1, "inter_op": 1},
                "graph_optimization": "ORT_ENABLE_ALL (default)",
                "machine": artifacts.machine(),
                "results": results,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
