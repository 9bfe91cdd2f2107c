"""The models prefix in Cloud Storage through the official google-cloud-storage client: upload a
trained version folder, rebuild registry.json from the cards under the prefix, read a card.

Order matters to a reader that polls (the prediction service): a version's files first (the
card after what it points at), registry.json last, written only if nobody else wrote it since
it was read (a generation precondition), so two jobs finishing together cannot drop each
other's version. The service re-verifies every sha256 anyway: a half-written version is refused,
never served.
"""

from __future__ import annotations

import json
from pathlib import Path

import layout
from layout import GcsUri

CONTENT_TYPES = {".json": "application/json", ".md": "text/markdown; charset=utf-8",
                 ".csv": "text/csv", ".onnx": "application/octet-stream"}
REGISTRY_ATTEMPTS = 5


def _blob(client, uri: GcsUri):
    return client.bucket(uri.bucket).blob(uri.object_name)


def upload_version(client, models: GcsUri, local_dir: Path, name: str, version: str) -> list[str]:
    """Uploads `<local_dir>/{VERSION_FILES}` to `<models>/<name>/<version>/`; returns the URIs."""
    done = []
    for file, uri in layout.version_objects(models, name, version).items():
        path = local_dir / file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the trainer wrote no {file}")
        blob = _blob(client, uri)
        blob.cache_control = "no-store"
        blob.upload_from_filename(str(path), content_type=CONTENT_TYPES[path.suffix])
        done.append(str(uri))
    return done


def read_cards(client, models: GcsUri) -> dict[str, bytes]:
    """Every `<name>/<version>/card.json` under the prefix, as bytes."""
    prefix = f"{models.path}/" if models.path else ""
    cards = {}
    for blob in client.list_blobs(models.bucket, prefix=prefix):
        rel = layout.is_card_object(models, blob.name)
        if rel:
            cards[rel] = blob.download_as_bytes()
    return cards


def write_registry(client, models: GcsUri) -> dict:
    """Rebuilds registry.json from the cards, with a generation precondition (retried when
    another writer won)."""
    from google.api_core.exceptions import PreconditionFailed

    blob = _blob(client, layout.registry_uri(models))
    for _ in range(REGISTRY_ATTEMPTS):
        current = client.bucket(models.bucket).get_blob(blob.name)
        generation = current.generation if current is not None else 0
        registry = layout.registry_document(read_cards(client, models))
        blob.cache_control = "no-store"
        try:
            blob.upload_from_string(json.dumps(registry, indent=1) + "\n", content_type="application/json",
                                    if_generation_match=generation)
            return registry
        except PreconditionFailed:
            continue
    raise RuntimeError(f"{layout.registry_uri(models)} kept changing under {REGISTRY_ATTEMPTS} attempts")


def read_card(client, models: GcsUri, name: str, version: str) -> bytes:
    return _blob(client, layout.version_objects(models, name, version)["card.json"]).download_as_bytes()


def read_registry(client, models: GcsUri) -> dict:
    return json.loads(_blob(client, layout.registry_uri(models)).download_as_bytes())
