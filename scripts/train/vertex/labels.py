"""Vertex AI labels from a model card: the card's headline metrics, made to fit the label rules.

Vertex AI (like every Google Cloud resource) accepts at most 64 labels per resource; keys and
values of at most 63 characters from lowercase letters, digits, `_` and `-`; a key starts with
a lowercase letter and is never empty, a value may be. Everything else is refused by the API,
so the whole request fails: sanitise here, where a test can see it.

Numbers become their decimal text with `.` turned into `_` (0.0086823 -> "0_0086823"), so a
label still reads as the number; the exact values stay in card.json next to the artifact.
"""

from __future__ import annotations

import math
import re

MAX_LABELS = 64
MAX_LEN = 63
_INVALID = re.compile(r"[^a-z0-9_-]")
_KEY_START = re.compile(r"^[a-z]")


class LabelError(ValueError):
    """A label that cannot be made valid (an empty key), or too many labels."""


def sanitize_value(value: object) -> str:
    """Lowercase, every character outside [a-z0-9_-] replaced by `_`, cut to 63 characters.
    Numbers are formatted first (`number_text`); booleans become "true"/"false"."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = number_text(value)
    else:
        text = str(value)
    return _INVALID.sub("_", text.lower())[:MAX_LEN]


def sanitize_key(key: str) -> str:
    """As a value, then made to start with a lowercase letter (`k_` in front otherwise)."""
    text = _INVALID.sub("_", str(key).lower())
    if not text:
        raise LabelError(f"label key {key!r} is empty once sanitised")
    if not _KEY_START.match(text):
        text = "k_" + text
    return text[:MAX_LEN]


def number_text(value: float, digits: int = 6) -> str:
    """A short, stable decimal text: 6 significant digits, no exponent for ordinary metrics;
    `nan`, `inf` and `-inf` spelled out (labels cannot carry them as numbers)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, f".{digits}g")


def sanitize(labels: dict[str, object]) -> dict[str, str]:
    """Every key and value sanitised. Two keys that collide once sanitised, or more than 64
    labels, are refused rather than silently dropping one."""
    out: dict[str, str] = {}
    for key, value in labels.items():
        k = sanitize_key(key)
        if k in out:
            raise LabelError(f"label keys collide once sanitised: {key!r} -> {k!r}")
        out[k] = sanitize_value(value)
    if len(out) > MAX_LABELS:
        raise LabelError(f"{len(out)} labels; Vertex AI accepts at most {MAX_LABELS}")
    return out


def is_valid(labels: dict[str, str]) -> bool:
    """The rules themselves, independent of `sanitize` (the tests check one against the other)."""
    return len(labels) <= MAX_LABELS and all(
        0 < len(k) <= MAX_LEN
        and len(v) <= MAX_LEN
        and re.fullmatch(r"[a-z][a-z0-9_-]*", k)
        and re.fullmatch(r"[a-z0-9_-]*", v)
        for k, v in labels.items()
    )


def card_labels(card: dict, extra: dict[str, object] | None = None) -> dict[str, str]:
    """The labels of one registered version: identity, provenance and the card's metrics
    (test period: the model's and its baselines'; validation: the pinball loss that picked the
    initial champion)."""
    test = card["metrics"]["test"]
    validation = card["metrics"]["validation"]
    raw: dict[str, object] = {
        "mirai_model": card["name"],
        "mirai_version": card["version"],
        "window": card["window"],
        "onnx_sha256": card["onnx"]["sha256"][:16],
        "data_sha256": card["data"]["sha256"][:16],
        "test_from": card["splits"]["test"]["target_from"],
        "test_to": card["splits"]["test"]["target_to"],
        "test_n": test["n"],
        "test_mae": test["mae"]["model"],
        "test_mae_random_walk": test["mae"]["random_walk"],
        "test_rmse": test["rmse"]["model"],
        "test_mase": test["mase"]["model"],
        "test_pinball": test["pinball"]["model"],
        "test_pinball_gaussian": test["pinball"]["gaussian_rolling_vol"],
        "test_hit_rate": test["hit_rate"]["model"],
        "test_always_up": test["hit_rate"]["always_up"],
        "test_coverage_90": test["coverage_90"]["model"],
        "test_dm_p_mae_vs_rw": test["diebold_mariano"]["abs_error_vs_random_walk"]["p_value"],
        "test_dm_p_pinball_vs_gauss": test["diebold_mariano"]["pinball_vs_gaussian_rolling_vol"]["p_value"],
        "validation_pinball": validation["pinball"]["model"],
        "managed_by": "mirai-scripts-train",
    }
    raw.update(extra or {})
    return sanitize(raw)
