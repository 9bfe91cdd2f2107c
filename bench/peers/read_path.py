"""The Python peer of MiraiKakaku's read path: FastAPI + asyncpg + onnxruntime, written the way a
user would write these three routes as one small app instead of a gateway in front of services.

    GET /v1/stocks/{symbol}/quote     the latest quote, from the two latest daily bars
    GET /v1/stocks/{symbol}/bars      stored daily bars over a range (start, end, limit, ...)
    GET /v1/predictions/{symbol}      the champion's next-bar forecast (onnxruntime)

Same paths, query parameters and JSON shapes as the gateway's routes, read from the same tables
of stock-data's database (its migrations) and the same ONNX artifact as the prediction service.
It does no authentication, rate limiting, tracing, metrics or caching, and stores no prediction:
see README.md beside this file. Run by uvicorn (scripts/bench-http --peers starts it):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mirai_stock_bench \\
        uvicorn read_path:app --app-dir bench/peers --workers 2 --port 10380

Settings (environment): DATABASE_URL (stock-data's database, required), MIRAI_MODELS_DIR
(default services/prediction/models), PEER_DB_POOL (connections per worker, default 10, asyncpg's
default).
"""

from __future__ import annotations

import base64
import math
import os
import time
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path as FsPath

import asyncpg
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel

import forecast

ROOT = FsPath(__file__).resolve().parents[2]
MODELS_DIR = FsPath(os.environ.get("MIRAI_MODELS_DIR", ROOT / "services/prediction/models"))
POOL_SIZE = int(os.environ.get("PEER_DB_POOL", "10"))

# stock-data's enums as stored (proto/mirai/stock/v1/stock.proto).
ONE_DAY = 6
ADJUSTMENTS = {1: "raw", 2: "split", 3: "all"}
QUALITY_FLAGS = {
    1: "ohlc_inconsistent",
    2: "non_positive_price",
    3: "non_positive_volume",
    4: "duplicate",
    5: "out_of_order",
    6: "gap_before",
    7: "outlier_return",
    8: "off_calendar",
    9: "value_changed",
    10: "source_repaired",
}
TICKER_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=POOL_SIZE, max_size=POOL_SIZE
    )
    app.state.model = forecast.load_champion(MODELS_DIR)
    yield
    await app.state.pool.close()


app = FastAPI(title="MiraiKakaku read path, Python peer", lifespan=lifespan)


# === Errors: problem+json like the gateway's ===


class Problem(Exception):
    def __init__(self, status: int, slug: str, title: str, detail: str):
        self.status, self.slug, self.title, self.detail = status, slug, title, detail


def not_found(detail: str) -> Problem:
    return Problem(404, "not-found", "Not Found", detail)


def invalid(detail: str) -> Problem:
    return Problem(400, "invalid-request", "Invalid request", detail)


@app.exception_handler(Problem)
async def problem_response(request: Request, problem: Problem) -> JSONResponse:
    return JSONResponse(
        {
            "type": f"https://mirai.dev/problems/{problem.slug}",
            "title": problem.title,
            "status": problem.status,
            "detail": problem.detail,
        },
        status_code=problem.status,
        media_type="application/problem+json",
    )


@app.exception_handler(RequestValidationError)
async def invalid_query(request: Request, error: RequestValidationError) -> JSONResponse:
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in error.errors()
    )
    return await problem_response(
        request, Problem(400, "invalid-query", "Invalid query string", detail)
    )


def ticker(raw: str) -> str:
    """Trimmed and upper-cased; 1-10 of A-Z, 0-9, '.', '-', starting with a letter or digit."""
    t = raw.strip().upper()
    if not (1 <= len(t) <= 10 and t[0].isalnum() and t.isascii() and set(t) <= TICKER_CHARS):
        raise invalid(f"`{raw}` is not a ticker (1-10 of A-Z, 0-9, '.', '-', starting with a letter or digit)")
    return t


# === Quote ===


class Quote(BaseModel):
    symbol: str
    last_price: float
    last_time: datetime | None
    previous_close: float
    change: float
    change_percent: float
    day_open: float | None
    day_high: float | None
    day_low: float | None
    day_volume: float | None
    source: str
    adjustment: str
    updated_at: datetime | None


@app.get("/v1/stocks/{symbol}/quote", response_model=Quote)
async def quote(symbol: str):
    symbol = ticker(symbol)
    rows = await app.state.pool.fetch(
        """SELECT start_at, end_at, open, high, low, close, volume, source, ingested_at
           FROM bars WHERE symbol = $1 AND timeframe = $2
           ORDER BY start_at DESC LIMIT 2""",
        symbol,
        ONE_DAY,
    )
    if not rows:
        raise not_found(f"no data for {symbol} (unknown symbol or no bars)")
    day = rows[0]
    previous_close = rows[1]["close"] if len(rows) > 1 else 0.0
    change = day["close"] - previous_close if len(rows) > 1 else 0.0
    return {
        "symbol": symbol,
        "last_price": day["close"],
        "last_time": day["end_at"],
        "previous_close": previous_close,
        "change": change,
        "change_percent": change / previous_close * 100.0 if previous_close else 0.0,
        "day_open": day["open"],
        "day_high": day["high"],
        "day_low": day["low"],
        "day_volume": day["volume"],
        "source": day["source"],
        "adjustment": "raw",
        # When the data behind the quote last changed (the gateway's is when stock-data built
        # its in-memory quote).
        "updated_at": max(r["ingested_at"] for r in rows),
    }


# === Bars ===


def flag_names(bits: int) -> list[str] | None:
    """The names of the flags set in `bits` (bit n = flag n), or None for a clean bar."""
    if not bits:
        return None
    return [name for bit, name in QUALITY_FLAGS.items() if bits >> bit & 1]


class Bar(BaseModel):
    start: datetime | None
    end: datetime | None
    open: float
    high: float
    low: float
    close: float
    volume: float
    source_bars: int
    quality_flags: list[str] | None = None  # left out when empty, as the gateway does


class BarPage(BaseModel):
    symbol: str
    adjustment: str
    source: str
    bars: list[Bar]
    next_page_token: str | None = None  # left out on the last page


@app.get("/v1/stocks/{symbol}/bars", response_model=BarPage, response_model_exclude_none=True)
async def bars(
    symbol: str,
    timeframe: str = "1Day",
    start: AwareDatetime | None = None,
    end: AwareDatetime | None = None,
    limit: int = Query(0, ge=0),
    page_token: str | None = None,
    newest_first: bool = False,
):
    symbol = ticker(symbol)
    if timeframe != "1Day":
        raise invalid("timeframe: the peer serves stored daily bars only (1Day)")
    if start and end and end < start:
        raise invalid("end: must not be before start")
    limit = limit or 1000
    if limit > 10_000:
        raise invalid(f"limit: must be between 1 and 10000, got {limit}")
    conditions = ["symbol = $1", "timeframe = $2"]
    args: list = [symbol, ONE_DAY]
    if start:
        args.append(start)
        conditions.append(f"start_at >= ${len(args)}")
    if end:
        args.append(end)
        conditions.append(f"start_at < ${len(args)}")
    if page_token:
        try:
            after = datetime.fromisoformat(
                base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)).decode()
            )
        except ValueError:
            raise invalid("page_token: not a token from this API") from None
        args.append(after)
        conditions.append(f"start_at {'<' if newest_first else '>'} ${len(args)}")
    args.append(limit + 1)
    order = "DESC" if newest_first else "ASC"
    async with app.state.pool.acquire() as conn:
        if await conn.fetchval("SELECT 1 FROM symbols WHERE symbol = $1", symbol) is None:
            raise not_found(f"symbol {symbol} is not listed")
        rows = await conn.fetch(
            f"""SELECT start_at, end_at, open, high, low, close, volume, quality_flags, source
                FROM bars WHERE {' AND '.join(conditions)}
                ORDER BY start_at {order} LIMIT ${len(args)}""",
            *args,
        )
    next_page_token = None
    if len(rows) > limit:
        rows = rows[:limit]
        key = rows[-1]["start_at"].isoformat()
        next_page_token = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
    sources = {r["source"] for r in rows}
    return {
        "symbol": symbol,
        "adjustment": "raw",
        "source": "" if not sources else sources.pop() if len(sources) == 1 else "mixed",
        "bars": [
            {
                "start": r["start_at"],
                "end": r["end_at"],
                "open": r["open"],
                "high": r["high"],
                "low": r["low"],
                "close": r["close"],
                "volume": r["volume"],
                "source_bars": 1,
                "quality_flags": flag_names(r["quality_flags"]),
            }
            for r in rows
        ],
        "next_page_token": next_page_token,
    }


# === Forecast ===


class ModelRef(BaseModel):
    name: str
    version: str


class QuantileValue(BaseModel):
    level: float
    price: float


class Forecast(BaseModel):
    prediction_id: str
    symbol: str
    model: ModelRef | None
    role: str | None
    as_of: datetime | None
    target_start: datetime | None
    last_close: float
    point: float
    lower: float
    upper: float
    interval_level: float
    p_up: float
    quantiles: list[QuantileValue]
    latency_ms: float
    adjustment: str


@app.get("/v1/predictions/{symbol}", response_model=Forecast)
async def predict(symbol: str):
    started = time.perf_counter()
    symbol = ticker(symbol)
    model: forecast.Model = app.state.model
    rows = await app.state.pool.fetch(
        """SELECT start_at, open, high, low, close, volume, adjustment
           FROM bars WHERE symbol = $1 AND timeframe = $2
           ORDER BY start_at DESC LIMIT $3""",
        symbol,
        ONE_DAY,
        model.bars_needed,
    )
    if not rows:
        raise not_found(f"no daily bars for {symbol}")
    if len(rows) < model.bars_needed:
        raise Problem(
            409,
            "conflict",
            "Conflict with the current state",
            f"{symbol} has {len(rows)} daily bars; {model.name}@{model.version} needs "
            f"{model.bars_needed} (window {model.window} + 1)",
        )
    rows.reverse()
    try:
        ohlcv = np.array(
            [(r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in rows],
            dtype=np.float64,
        )
        window = forecast.features(ohlcv)
    except forecast.BadBars as error:
        raise Problem(409, "conflict", "Conflict with the current state", f"{symbol}: {error}") from None
    q = forecast.run(model, window[np.newaxis]).astype(np.float64)[0].tolist()
    last = rows[-1]
    prices = [last["close"] * math.exp(r) for r in q]
    return {
        "prediction_id": forecast.uuid7(),
        "symbol": symbol,
        "model": {"name": model.name, "version": model.version},
        "role": "champion",
        "as_of": last["start_at"],
        "target_start": forecast.next_session(last["start_at"]),
        "last_close": last["close"],
        "point": prices[model.median],
        "lower": prices[model.lower],
        "upper": prices[model.upper],
        "interval_level": model.interval_level(),
        "p_up": forecast.p_up(model, q),
        "quantiles": [{"level": lv, "price": p} for lv, p in zip(model.levels, prices)],
        "latency_ms": (time.perf_counter() - started) * 1e3,
        "adjustment": ADJUSTMENTS.get(last["adjustment"], "unspecified"),
    }
