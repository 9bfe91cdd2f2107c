"""registry.json: the one rule that turns a set of version entries into the registry document.

Standard library only, so both writers use it: `artifacts.write_registry` (a local models
folder, entries from the files on disk) and `vertex/layout.registry_document` (a models prefix
in Cloud Storage, entries from the cards' bytes).
"""

from __future__ import annotations

REGISTRY_SCHEMA = 1
CHAMPION_RULE = (
    "lowest mean pinball loss on the validation split (targets 2016-01-01..2017-12-31); "
    "test-period metrics play no part in the choice"
)


class RegistryError(ValueError):
    """The entries do not make a registry (none, or more than one model family)."""


def assemble(entries: list[dict], where: str) -> dict:
    """The registry of `entries` (sorted by card path by the caller): one model family, the
    champion the lowest validation pinball (ties: the lower version text), every other
    version a challenger. `where` names the models root in errors."""
    if not entries:
        raise RegistryError(f"no model cards under {where}")
    names = sorted({e["name"] for e in entries})
    if len(names) != 1:
        raise RegistryError(f"one model family expected, found {names}")
    champion = min(entries, key=lambda e: (e["validation_pinball"], e["version"]))
    return {
        "schema_version": REGISTRY_SCHEMA,
        "generated_by": "scripts/train/train",
        "paths": "relative to this file's folder",
        "models": entries,
        "champion": {"name": champion["name"], "version": champion["version"]},
        "challengers": [{"name": e["name"], "version": e["version"]} for e in entries if e is not champion],
        "champion_rule": CHAMPION_RULE,
    }
