"""The models folder's layout under a `gs://` prefix — identical to the local one, so the
prediction service reads either the same way:

    <models uri>/registry.json
    <models uri>/<name>/<version>/{model.onnx, card.json, MODEL_CARD.md, golden.json, test_forecasts.csv}

`registry.json` is rebuilt from the cards under the prefix (every card carries the sha256 and
size of its ONNX file and the sha256 of its golden file; the card's own sha256 is taken from its
bytes), with the same entries, champion rule and relative paths as
`artifacts.write_registry` writes locally. Standard library only: the launcher's venv has no
numpy.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# registry.py beside train.py: the registry rule the local writer uses too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import registry  # noqa: E402

# The files of one version folder, in upload order: everything the card points at first, the
# card last but one and the human card last (the registry, which names the version, is written
# after all of them, so a reader never sees a registry entry whose files are not there yet).
VERSION_FILES = ("model.onnx", "golden.json", "test_forecasts.csv", "card.json", "MODEL_CARD.md")
REGISTRY = "registry.json"
# Bucket names: 3-63 characters (dotted names up to 222, each part at most 63), lowercase
# letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class LayoutError(ValueError):
    """A gs:// URI or a name that cannot be part of the layout."""


@dataclass(frozen=True)
class GcsUri:
    bucket: str
    path: str  # no leading or trailing slash; "" for the bucket's root

    @classmethod
    def parse(cls, uri: str) -> "GcsUri":
        if not uri.startswith("gs://"):
            raise LayoutError(f"{uri!r} is not a gs:// URI")
        bucket, _, path = uri[len("gs://"):].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket or any(len(p) > 63 for p in bucket.split(".")):
            raise LayoutError(f"{uri!r}: {bucket!r} is not a valid bucket name")
        path = path.strip("/")
        if "//" in path or any(p in (".", "..") for p in path.split("/")):
            raise LayoutError(f"{uri!r}: empty, '.' or '..' path segments")
        return cls(bucket, path)

    def join(self, *parts: str) -> "GcsUri":
        path = "/".join(p.strip("/") for p in (self.path, *parts) if p.strip("/"))
        return GcsUri(self.bucket, path)

    @property
    def object_name(self) -> str:
        return self.path

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.path}" if self.path else f"gs://{self.bucket}"


def segment(value: str, what: str) -> str:
    """A model name or version as one path segment (what ModelRef accepts on the Rust side is
    narrower still; this only keeps the layout a tree)."""
    if not _SEGMENT.match(value) or value in (".", ".."):
        raise LayoutError(f"{what} {value!r} cannot be a path segment")
    return value


def models_uri(staging_bucket: str, explicit: str | None = None) -> GcsUri:
    """The models root: `explicit`, or `<staging bucket>/models`."""
    return GcsUri.parse(explicit) if explicit else GcsUri.parse(staging_bucket).join("models")


def version_dir(models: GcsUri, name: str, version: str) -> GcsUri:
    return models.join(segment(name, "model name"), segment(version, "version"))


def version_objects(models: GcsUri, name: str, version: str) -> dict[str, GcsUri]:
    """file name -> its object, in upload order."""
    d = version_dir(models, name, version)
    return {f: d.join(f) for f in VERSION_FILES}


def registry_uri(models: GcsUri) -> GcsUri:
    return models.join(REGISTRY)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def registry_entry(card_rel: str, card_bytes: bytes) -> dict:
    """One registry entry from a card's bytes and its path relative to the models root."""
    card = json.loads(card_bytes)
    folder = card_rel.rsplit("/", 1)[0]
    expected = f"{card['name']}/{card['version']}"
    if folder != expected:
        raise LayoutError(f"{card_rel}: the card says {expected}, its folder is {folder}")
    return {
        "name": card["name"],
        "version": card["version"],
        "onnx": f"{folder}/{card['onnx']['file']}",
        "sha256": card["onnx"]["sha256"],
        "bytes": card["onnx"]["bytes"],
        "card": card_rel,
        "card_sha256": sha256_hex(card_bytes),
        "golden": f"{folder}/{card['golden']['file']}",
        "golden_sha256": card["golden"]["sha256"],
        "window": card["window"],
        "bars_needed": card["bars_needed"],
        "input": {"name": card["input"]["name"], "shape": card["input"]["shape"]},
        "output": {"name": card["output"]["name"], "shape": card["output"]["shape"]},
        "validation_pinball": card["metrics"]["validation"]["pinball"]["model"],
    }


def registry_document(cards: dict[str, bytes]) -> dict:
    """registry.json from `{<name>/<version>/card.json: bytes}` — the rules of
    artifacts.write_registry: sorted by card path, one model family, the champion the lowest
    validation pinball (ties: the lower version text), every other version a challenger."""
    entries = [registry_entry(rel, data) for rel, data in sorted(cards.items())]
    try:
        return registry.assemble(entries, "the models prefix")
    except registry.RegistryError as error:
        raise LayoutError(str(error)) from error


def is_card_object(models: GcsUri, object_name: str) -> str | None:
    """`<name>/<version>/card.json` relative to the models root when the object is a card of
    the layout (exactly two folders deep), else None."""
    prefix = f"{models.path}/" if models.path else ""
    if not object_name.startswith(prefix):
        return None
    rel = object_name[len(prefix):]
    parts = rel.split("/")
    return rel if len(parts) == 3 and parts[2] == "card.json" else None
