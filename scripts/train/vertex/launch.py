"""scripts/train/train --vertex: the same training as a Vertex AI custom job, its artifacts
and card in gs://…/models/<name>/<version>/ (the local models folder's layout), then each
trained version registered in the Vertex AI Model Registry with the card's metrics as labels.

Steps of a live run (each printed):
  1. CreateCustomJob: job.json's worker pool (one CPU machine) running the training container
     (scripts/train/vertex/Dockerfile, built from the same train.py and pinned requirements);
     the job trains, uploads the version folders and rebuilds <models uri>/registry.json;
  2. wait for the job (polls its state; a failed job exits 1 with its error);
  3. per trained version: read its card.json back from the models prefix, UploadModel as a new
     version of the registry entry --display-name (the entry is created on first use).

--dry-run builds and prints both requests as JSON (the exact messages a live run sends),
the upload request from the committed card of each version (services/prediction/models/), and
makes no network call and needs no credentials.

Every option also reads an environment variable (in brackets); flags win. Credentials: the
Application Default Credentials of the caller (`gcloud auth application-default login`), who
needs roles/aiplatform.user and iam.serviceAccountUser on the job's service account.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build  # noqa: E402
import layout  # noqa: E402

REPO = HERE.parents[2]
LOCAL_MODELS = REPO / "services/prediction/models"
VERSIONS = ("1.0.0", "1.1.0")  # train.SPECS (a test compares them)
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    ap = argparse.ArgumentParser(prog="scripts/train/train --vertex", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default=env("MIRAI_VERTEX_PROJECT") or env("GOOGLE_CLOUD_PROJECT"),
                    help="Google Cloud project id [MIRAI_VERTEX_PROJECT, GOOGLE_CLOUD_PROJECT]")
    ap.add_argument("--region", default=env("MIRAI_VERTEX_REGION", "europe-west4"),
                    help="Vertex AI region [MIRAI_VERTEX_REGION] (default: %(default)s)")
    ap.add_argument("--staging-bucket", default=env("MIRAI_VERTEX_STAGING_BUCKET"),
                    help="gs://BUCKET[/PATH]: the job's output and, by default, the models prefix [MIRAI_VERTEX_STAGING_BUCKET]")
    ap.add_argument("--models-uri", default=env("MIRAI_MODELS_URI"),
                    help="gs:// models root the job writes and the prediction service reads "
                         "[MIRAI_MODELS_URI] (default: <staging bucket>/models)")
    ap.add_argument("--display-name", default=env("MIRAI_VERTEX_MODEL_DISPLAY_NAME", f"mirai-{build.MODEL_NAME}"),
                    help="Model Registry display name; its id is derived from it [MIRAI_VERTEX_MODEL_DISPLAY_NAME] (default: %(default)s)")
    ap.add_argument("--image", default=env("MIRAI_VERTEX_IMAGE"),
                    help="training container [MIRAI_VERTEX_IMAGE] (default: "
                         "<region>-docker.pkg.dev/<project>/mirai/mirai-train:<git commit>)")
    ap.add_argument("--serving-image", default=env("MIRAI_VERTEX_SERVING_IMAGE"),
                    help="the Model's container spec [MIRAI_VERTEX_SERVING_IMAGE] (default: "
                         "<region>-docker.pkg.dev/<project>/mirai/mirai-prediction:<git commit>)")
    ap.add_argument("--service-account", default=env("MIRAI_VERTEX_SERVICE_ACCOUNT"),
                    help="the job runs as this Google service account [MIRAI_VERTEX_SERVICE_ACCOUNT] "
                         "(default: mirai-train@<project>.iam.gserviceaccount.com)")
    ap.add_argument("--machine-type", default=env("MIRAI_VERTEX_MACHINE_TYPE", "n1-standard-4"),
                    help="[MIRAI_VERTEX_MACHINE_TYPE] (default: %(default)s)")
    ap.add_argument("--version", action="append", choices=VERSIONS,
                    help="train only this version (repeatable; default: all, as locally)")
    ap.add_argument("--max-epochs", type=int, help="cap epochs (smoke runs; the committed models use the spec)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the CustomJob and UploadModel requests (from the committed cards); no network")
    ap.add_argument("--register-only", action="store_true",
                    help="skip training: register versions already under the models prefix")
    ap.add_argument("--poll", type=float, default=30.0, help="seconds between job state polls (default: %(default)s)")
    return ap


def settings_of(args: argparse.Namespace, commit: str) -> build.Settings:
    missing = [f for f, v in (("--project", args.project), ("--staging-bucket", args.staging_bucket)) if not v]
    if missing:
        raise SystemExit(f"train --vertex: {' and '.join(missing)} required (flags or environment; see --help)")
    registry_host = f"{args.region}-docker.pkg.dev/{args.project}/mirai"
    tag = commit or "latest"
    staging = layout.GcsUri.parse(args.staging_bucket)
    versions = tuple(args.version or ())
    return build.Settings(
        project=args.project,
        region=args.region,
        staging_bucket=staging,
        models=layout.models_uri(args.staging_bucket, args.models_uri),
        display_name=args.display_name,
        image=args.image or f"{registry_host}/mirai-train:{tag}",
        serving_image=args.serving_image or f"{registry_host}/mirai-prediction:{tag}",
        service_account=args.service_account or f"mirai-train@{args.project}.iam.gserviceaccount.com",
        machine_type=args.machine_type,
        versions=versions,
        max_epochs=args.max_epochs,
        job_name=f"mirai-train-{build.MODEL_NAME}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
        source=commit,
    )


def say(message: str) -> None:
    print(f"train --vertex: {message}", file=sys.stderr, flush=True)


def dry_run(settings: build.Settings) -> int:
    print("# CreateCustomJob  POST https://%s/v1/%s/customJobs" % (settings.api_endpoint, settings.location))
    print(build.as_json(build.custom_job_request(settings)))
    for version in settings.versions or VERSIONS:
        card = json.loads((LOCAL_MODELS / build.MODEL_NAME / version / "card.json").read_text())
        request = build.upload_model_request(settings, card, parent_exists=False)
        print(f"\n# UploadModel  POST https://{settings.api_endpoint}/v1/{settings.location}/models:upload"
              f"  ({build.MODEL_NAME} {version}; from the committed card; a later version sends "
              f"parentModel {build.model_resource(settings)} instead of modelId)")
        print(build.as_json(request))
    say("dry run: nothing was sent")
    return 0


def wait_for(client, name: str, poll: float):
    last = None
    while True:
        job = client.get_custom_job(name=name)
        state = job.state.name
        if state != last:
            say(f"{name}: {state}")
            last = state
        if state in TERMINAL:
            return job
        time.sleep(poll)


def register(settings: build.Settings, versions) -> None:
    from google.api_core.client_options import ClientOptions
    from google.api_core.exceptions import NotFound
    from google.cloud import aiplatform_v1 as v1
    from google.cloud import storage

    import gcs

    models_client = v1.ModelServiceClient(client_options=ClientOptions(api_endpoint=settings.api_endpoint))
    storage_client = storage.Client(project=settings.project)
    registry = gcs.read_registry(storage_client, settings.models)
    for version in versions:
        card_bytes = gcs.read_card(storage_client, settings.models, build.MODEL_NAME, version)
        entry = next((e for e in registry["models"] if e["version"] == version), None)
        if entry is None or entry["card_sha256"] != layout.sha256_hex(card_bytes):
            raise SystemExit(f"train --vertex: {layout.registry_uri(settings.models)} does not list this card of {version}")
        try:
            models_client.get_model(name=build.model_resource(settings))
            parent_exists = True
        except NotFound:
            parent_exists = False
        request = build.upload_model_request(settings, json.loads(card_bytes), parent_exists)
        say(f"registering {build.MODEL_NAME} {version} in {build.model_resource(settings)}")
        result = models_client.upload_model(request=request).result(timeout=600)
        say(f"registered: {result.model} version {result.model_version_id}")


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    settings = settings_of(args, git_commit())
    if args.dry_run:
        return dry_run(settings)
    from google.api_core.client_options import ClientOptions
    from google.cloud import aiplatform_v1 as v1

    versions = settings.versions or VERSIONS
    if not args.register_only:
        client = v1.JobServiceClient(client_options=ClientOptions(api_endpoint=settings.api_endpoint))
        job = client.create_custom_job(request=build.custom_job_request(settings))
        say(f"submitted {job.name} ({settings.image}); console: https://console.cloud.google.com/vertex-ai/"
            f"locations/{settings.region}/training/{job.name.rsplit('/', 1)[-1]}?project={settings.project}")
        job = wait_for(client, job.name, args.poll)
        if job.state.name != "JOB_STATE_SUCCEEDED":
            say(f"the job ended {job.state.name}: {job.error.message}")
            return 1
    register(settings, versions)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
