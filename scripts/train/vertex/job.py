"""Entry point of the training container (Dockerfile beside this file) on Vertex AI: the same
training as `scripts/train/train` (train.py, the same pinned requirements and data), into a
scratch folder, then each trained version uploaded to `<models uri>/<name>/<version>/` and
`<models uri>/registry.json` rebuilt — the local models folder's layout, under a gs:// prefix.

    python job.py --models-uri gs://BUCKET/models [--version X]... [--max-epochs N]

Credentials: the job's service account (Application Default Credentials on Vertex AI).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # layout, gcs
sys.path.insert(1, str(HERE.parent))  # train.py and its modules


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-uri", required=True, help="gs:// models root (registry.json and <name>/<version>/)")
    ap.add_argument("--version", action="append", help="train only this version (repeatable; default: all)")
    ap.add_argument("--max-epochs", type=int, help="cap epochs (smoke runs)")
    args = ap.parse_args(argv)

    import layout

    models = layout.GcsUri.parse(args.models_uri)
    import train  # torch and the rest of the training venv: only in the container
    from google.cloud import storage

    client = storage.Client()
    with tempfile.TemporaryDirectory(prefix="mirai-train-") as tmp:
        out = Path(tmp)
        train_args = ["--out", str(out)]
        for v in args.version or []:
            train_args += ["--version", v]
        if args.max_epochs:
            train_args += ["--max-epochs", str(args.max_epochs)]
        if train.main(train_args) != 0:
            return 1
        import gcs

        for card in sorted(out.glob(f"{train.MODEL_NAME}/*/card.json")):
            name, version = card.parent.parent.name, card.parent.name
            for uri in gcs.upload_version(client, models, card.parent, name, version):
                print(f"uploaded {uri}", flush=True)
        registry = gcs.write_registry(client, models)
        print(f"wrote {layout.registry_uri(models)}: {len(registry['models'])} versions, "
              f"initial champion {registry['champion']['version']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
