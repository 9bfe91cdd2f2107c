"""Trains the quantile LSTM versions on the S&P 500 daily history, exports each to ONNX and
writes its card, human model card, golden vectors and the registry.

Run through `scripts/train/train` (it owns the venv). `--version X` trains one version; the
registry is rebuilt from every card on disk either way.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import artifacts
import features
import metrics
from features import QUANTILES, Bars

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "services/stock-data/sample/sp500-2000.csv"
MODELS = REPO / "services/prediction/models"
MODEL_NAME = "spx-lstm"

TRAIN_END = "2015-12-31"
VALIDATION_START, VALIDATION_END = "2016-01-01", "2017-12-31"
TEST_START = "2018-01-01"
GAUSS_WINDOW = 20
MAX_BATCH = 4096


@dataclass(frozen=True)
class Spec:
    version: str
    window: int
    hidden: int
    layers: int
    seed: int = 20240601
    lr: float = 2e-3
    batch_size: int = 128
    max_epochs: int = 120
    patience: int = 15
    grad_clip: float = 1.0
    weight_decay: float = 0.0


SPECS = {
    s.version: s
    for s in [
        Spec("1.0.0", window=30, hidden=32, layers=1),
        Spec("1.1.0", window=60, hidden=64, layers=2),
    ]
}


# === data =====================================================================================


@dataclass
class Dataset:
    """Every forecast origin t (bar index) that has a full window and, except the very last bar,
    a target. Windows are [W, F] f32 feature rows for days t-W+1..t."""

    bars: Bars
    window: int
    origins: np.ndarray  # bar index t of each sample (with a target)
    x: np.ndarray  # [n, W, F] f32
    y: np.ndarray  # [n] f64, ln(close[t+1] / close[t])
    target_date: list[str]
    split: np.ndarray  # [n] "train" | "validation" | "test"


def build_dataset(bars: Bars, window: int) -> Dataset:
    rows = features.feature_rows(bars)  # row j describes bar j + 1
    n_bars = len(bars)
    origins = np.arange(window, n_bars - 1)
    # Row indices t-W .. t-1 ↔ bars t-W+1 .. t.
    x = np.stack([rows[t - window : t] for t in origins]).astype(np.float32)
    y = np.log(bars.close[origins + 1] / bars.close[origins])
    target_date = [bars.date[t + 1] for t in origins]
    split = np.array([split_of(d) for d in target_date])
    return Dataset(bars, window, origins, x, y, target_date, split)


def split_of(target_date: str) -> str:
    if target_date <= TRAIN_END:
        return "train"
    if VALIDATION_START <= target_date <= VALIDATION_END:
        return "validation"
    return "test"


def normalisation(bars: Bars) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std (ddof 0) of each feature over the training days' rows (days
    2000-01-04 .. 2015-12-31: every day whose row exists and lies in the training split)."""
    rows = features.feature_rows(bars).astype(np.float64)
    in_train = np.array([d <= TRAIN_END for d in bars.date[1:]])
    train_rows = rows[in_train]
    return train_rows.mean(axis=0), train_rows.std(axis=0)


# === training =================================================================================


def set_determinism(seed: int):
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # One thread: the same bits on any core count, and fair to the shared 2-core machine.
    torch.set_num_threads(1)


def fit(spec: Spec, ds: Dataset, mean: np.ndarray, std: np.ndarray):
    import torch

    from model import QuantileLSTM, pinball_loss

    set_determinism(spec.seed)
    tr = ds.split == "train"
    va = ds.split == "validation"
    target_scale = float(np.std(ds.y[tr]))
    model = QuantileLSTM(spec.hidden, spec.layers, mean, std, target_scale)
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)

    x_tr = torch.from_numpy(ds.x[tr])
    y_tr = torch.from_numpy((ds.y[tr] / target_scale).astype(np.float32))
    x_va = torch.from_numpy(ds.x[va])
    y_va = torch.from_numpy((ds.y[va] / target_scale).astype(np.float32))
    gen = torch.Generator().manual_seed(spec.seed)

    best = (float("inf"), 0, None)
    history = []
    t0 = time.perf_counter()
    for epoch in range(1, spec.max_epochs + 1):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for i in range(0, len(perm), spec.batch_size):
            idx = perm[i : i + spec.batch_size]
            opt.zero_grad()
            loss = pinball_loss(model(x_tr[idx]) / target_scale, y_tr[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            opt.step()
            total += float(loss) * len(idx)
        model.eval()
        with torch.no_grad():
            val = float(pinball_loss(model(x_va) / target_scale, y_va))
        history.append({"epoch": epoch, "train_pinball": total / len(perm), "validation_pinball": val})
        if val < best[0] - 1e-6:
            best = (val, epoch, copy.deepcopy(model.state_dict()))
        print(
            f"  [{spec.version}] epoch {epoch:3d}  train {total / len(perm):.5f}  val {val:.5f}"
            f"  best {best[0]:.5f}@{best[1]}",
            flush=True,
        )
        if epoch - best[1] >= spec.patience:
            break
    seconds = time.perf_counter() - t0
    model.load_state_dict(best[2])
    model.eval()
    return model, {
        "seconds": round(seconds, 2),
        "epochs_run": len(history),
        "best_epoch": best[1],
        "best_validation_pinball_scaled": best[0],
        "target_scale": target_scale,
        "history": history,
    }


# === export ===================================================================================


def export_onnx(model, spec: Spec, ds: Dataset, path: Path, meta: dict) -> dict:
    import onnx
    import torch

    example = torch.from_numpy(ds.x[:2])  # a batch of >= 2, or the exporter pins batch = 1
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings():
        # torch.export's internal deprecation chatter about its own LSTM tracing; not ours to fix.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="The tensor attributes self.lstm._flat_weights")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["features"],
            output_names=["quantiles"],
            dynamic_shapes={"x": {0: batch}},
            external_data=False,
            # Pinned, so a torch upgrade cannot silently move the graph to operator versions the
            # Rust side (tract) has not been checked against.
            opset_version=18,
            verbose=False,
        )
    tmp = path.with_suffix(".tmp.onnx")
    program.save(str(tmp), external_data=False)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    if proto.functions:
        proto = onnx.inliner.inline_local_functions(proto)
    proto.doc_string = (
        f"{MODEL_NAME} {spec.version}: quantile LSTM, next-day log return of close of the S&P 500 "
        f"index. Input features [batch, {spec.window}, {features.N_FEATURES}] raw f32 (see card.json)."
    )
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    ops = sorted({n.op_type for n in proto.graph.node})
    if "LSTM" not in ops:
        raise RuntimeError(f"exported graph has no LSTM node (ops: {ops})")
    inp, out = proto.graph.input[0], proto.graph.output[0]
    return {
        "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "ir_version": proto.ir_version,
        "ops": ops,
        "lstm_nodes": sum(1 for n in proto.graph.node if n.op_type == "LSTM"),
        "graph_input": {"name": inp.name, "shape": _dims(inp)},
        "graph_output": {"name": out.name, "shape": _dims(out)},
    }


def _dims(value_info) -> list:
    return [d.dim_param if d.dim_param else d.dim_value for d in value_info.type.tensor_type.shape.dim]


def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_predict(sess, x: np.ndarray, batch: int = 256) -> np.ndarray:
    out = [sess.run(["quantiles"], {"features": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out)


# === evaluation ===============================================================================


def evaluate(ds: Dataset, q: np.ndarray) -> dict:
    bars = ds.bars
    train_log_close = np.log(bars.close[[i for i, d in enumerate(bars.date) if d <= TRAIN_END]])
    scale = metrics.mase_scale(train_log_close)
    returns = np.concatenate([[np.nan], features.log_returns(bars.close)])  # returns[t] ends at bar t
    sigma_all = metrics.rolling_std(returns[1:], GAUSS_WINDOW)
    sigma = np.concatenate([[np.nan], sigma_all])[ds.origins]
    gauss = metrics.gaussian_quantiles(sigma, QUANTILES)
    q = q.astype(np.float64)

    def period(mask: np.ndarray) -> dict:
        if np.isnan(sigma[mask]).any():
            raise RuntimeError("the Gaussian baseline lacks history for part of the period")
        return metrics.summary(ds.y[mask], q[mask], gauss[mask], QUANTILES, scale)

    years = sorted({d[:4] for d, s in zip(ds.target_date, ds.split) if s == "test"})
    year = np.array([d[:4] for d in ds.target_date])
    return {
        "mase_scale": scale,
        "validation": period(ds.split == "validation"),
        "test": period(ds.split == "test"),
        "test_by_year": {y: period((ds.split == "test") & (year == y)) for y in years},
    }, sigma


def write_test_forecasts(path: Path, ds: Dataset, q: np.ndarray, sigma: np.ndarray) -> None:
    """One row per test day: what the model said at the origin's close and what happened, so a
    replay of the test period can be compared day by day, not only in aggregate."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["origin_date", "target_date", "next_log_return", "q05", "q50", "q95", "gaussian_sigma"])
        for i in np.flatnonzero(ds.split == "test"):
            w.writerow(
                [ds.bars.date[ds.origins[i]], ds.target_date[i], repr(float(ds.y[i]))]
                + [f"{float(v):.9g}" for v in q[i]]
                + [repr(float(sigma[i]))]
            )


def split_info(ds: Dataset) -> dict:
    out = {"by": "date of the target bar (the day after the window's last bar)"}
    for name in ("train", "validation", "test"):
        idx = np.flatnonzero(ds.split == name)
        out[name] = {
            "target_from": ds.target_date[idx[0]],
            "target_to": ds.target_date[idx[-1]],
            "rows": int(len(idx)),
        }
    out["train"]["rule"] = f"target date <= {TRAIN_END}"
    out["validation"]["rule"] = f"{VALIDATION_START} <= target date <= {VALIDATION_END}"
    out["test"]["rule"] = f"target date >= {TEST_START}"
    out["note"] = (
        "Windows may reach back into the previous split's bars (inputs are past data only). "
        "Normalisation statistics, the target scale and the MASE scale come from the training "
        "split only; validation picks the epoch (early stopping); test is touched once, after."
    )
    return out


# === main =====================================================================================


def versions_of_frameworks() -> dict:
    import onnx
    import onnxruntime
    import onnxscript
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def train_version(spec: Spec, bars: Bars, data_sha: str, models_dir: Path) -> None:
    import torch

    out_dir = models_dir / MODEL_NAME / spec.version
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"== {MODEL_NAME} {spec.version}: window {spec.window}, {spec.layers}x{spec.hidden} LSTM", flush=True)
    ds = build_dataset(bars, spec.window)
    mean, std = normalisation(bars)
    model, training = fit(spec, ds, mean, std)
    print(f"  trained in {training['seconds']} s, best epoch {training['best_epoch']}", flush=True)

    onnx_path = out_dir / "model.onnx"
    graph = export_onnx(
        model,
        spec,
        ds,
        onnx_path,
        meta={
            "mirai.model": MODEL_NAME,
            "mirai.version": spec.version,
            "mirai.window": str(spec.window),
            "mirai.features": ",".join(f["name"] for f in features.FEATURES),
            "mirai.quantiles": ",".join(str(q) for q in QUANTILES),
            "mirai.data_sha256": data_sha,
        },
    )
    sess = ort_session(onnx_path)
    q = ort_predict(sess, ds.x)
    with torch.no_grad():
        q_torch = model(torch.from_numpy(ds.x)).numpy()
    parity = float(np.max(np.abs(q - q_torch)))
    if parity > 1e-4:
        raise RuntimeError(f"onnxruntime and torch disagree by {parity}")
    if not np.all(np.diff(q, axis=1) >= 0):
        raise RuntimeError("exported quantiles cross")
    for b in (1, 64):
        got = sess.run(["quantiles"], {"features": ds.x[:b]})[0]
        if got.shape != (b, 3):
            raise RuntimeError(f"batch {b} gave shape {got.shape}")

    evaluation, sigma = evaluate(ds, q)
    forecasts_path = out_dir / "test_forecasts.csv"
    write_test_forecasts(forecasts_path, ds, q, sigma)
    golden = artifacts.golden_vectors(MODEL_NAME, spec, ds, sess)
    golden_path = out_dir / "golden.json"
    artifacts.write_json(golden_path, golden)

    card = artifacts.build_card(
        name=MODEL_NAME,
        spec=asdict(spec),
        created_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        frameworks=versions_of_frameworks(),
        graph=graph,
        onnx_path=onnx_path,
        golden_path=golden_path,
        forecasts_path=forecasts_path,
        data={
            "file": str(DATA.relative_to(REPO)),
            "sha256": data_sha,
            "rows": len(bars),
            "first_date": bars.date[0],
            "last_date": bars.date[-1],
            "series": "S&P 500 index, daily OHLCV",
            "source": "npm vega-datasets@3.2.1 package/data/sp500-2000.csv (BSD-3-Clause)",
        },
        splits=split_info(ds),
        normalisation={"mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist()},
        training=training,
        evaluation=evaluation,
        parity=parity,
        machine=artifacts.machine(),
        max_batch=MAX_BATCH,
        gauss_window=GAUSS_WINDOW,
    )
    artifacts.write_json(out_dir / "card.json", card)
    (out_dir / "MODEL_CARD.md").write_text(artifacts.render_model_card(card))
    print(f"  wrote {out_dir} ({onnx_path.stat().st_size} bytes of ONNX)", flush=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__,
        epilog="scripts/train/train --vertex [--dry-run] ... runs the same training as a Vertex AI custom job "
        "(artifacts in gs://, versions in the Model Registry); scripts/train/train --vertex --help lists its options.",
    )
    ap.add_argument("--version", action="append", choices=sorted(SPECS), help="train only this version (repeatable)")
    ap.add_argument("--max-epochs", type=int, help="cap epochs (smoke runs; the committed models use the spec)")
    ap.add_argument("--out", type=Path, default=MODELS, help="models folder (default: %(default)s)")
    args = ap.parse_args(argv)
    bars = features.load_csv(DATA)
    data_sha = features.sha256_file(DATA)
    print(f"data {DATA.relative_to(REPO)}: {len(bars)} bars {bars.date[0]}..{bars.date[-1]}, sha256 {data_sha}")
    for version in args.version or sorted(SPECS):
        spec = SPECS[version]
        if args.max_epochs:
            spec = dataclasses.replace(spec, max_epochs=args.max_epochs)
        train_version(spec, bars, data_sha, args.out)
    registry = artifacts.write_registry(args.out)
    print(f"registry: {len(registry['models'])} versions, initial champion {registry['champion']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
