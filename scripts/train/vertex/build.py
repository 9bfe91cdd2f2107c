"""The two requests `scripts/train/train --vertex` sends, built as the official SDK's own
request messages (google-cloud-aiplatform's `aiplatform_v1` types), so what `--dry-run` prints
is exactly what the live run sends, and a misspelled field fails here, not in Google's API:

- `CreateCustomJobRequest`: the worker pool spec of `job.json` (one CPU machine, the training
  container built from `Dockerfile`), with the versions to train as container arguments;
- `UploadModelRequest` per trained version: a version of the Model Registry entry
  `display_name`, `artifact_uri` = the version's folder under the models prefix, the card's
  metrics as labels (`labels.card_labels`).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from google.cloud import aiplatform_v1 as v1
from google.protobuf import json_format

import labels
import layout
from layout import GcsUri

HERE = Path(__file__).resolve().parent
JOB_TEMPLATE = HERE / "job.json"
MODEL_NAME = "spx-lstm"  # train.MODEL_NAME (train.py needs torch; a test compares the two)


@dataclass(frozen=True)
class Settings:
    project: str
    region: str
    staging_bucket: GcsUri
    models: GcsUri
    display_name: str  # Model Registry display name (one registry entry, one version per trained version)
    image: str  # the training container (scripts/train/vertex/Dockerfile)
    serving_image: str  # the Model's container spec: the prediction service's image
    service_account: str  # the training job runs as this Google service account
    machine_type: str = "n1-standard-4"
    versions: tuple[str, ...] = ()  # empty: every version train.py knows
    max_epochs: int | None = None
    job_name: str = "mirai-train"  # display name of the custom job (unique per submission)
    source: str = ""  # git commit of the training code, a label of the job and the versions
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def location(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def api_endpoint(self) -> str:
        return f"{self.region}-aiplatform.googleapis.com"


_PROJECT = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")


def check(settings: Settings) -> None:
    """What the API would refuse, refused before any call (and in --dry-run)."""
    if not _PROJECT.match(settings.project):
        raise ValueError(f"project {settings.project!r} is not a project id")
    if not _REGION.match(settings.region):
        raise ValueError(f"region {settings.region!r} is not a region (e.g. europe-west4)")
    if not (0 < len(settings.display_name) <= 128):
        raise ValueError("the Model Registry display name must have 1-128 characters")
    for what, value in (("image", settings.image), ("serving image", settings.serving_image)):
        if not value or " " in value:
            raise ValueError(f"{what} {value!r} is not an image reference")


# === the custom job ===


def job_args(settings: Settings) -> list[str]:
    """Container arguments after the template's: what `scripts/train/train` takes locally."""
    out: list[str] = []
    for version in settings.versions:
        out += ["--version", layout.segment(version, "version")]
    if settings.max_epochs:
        out += ["--max-epochs", str(settings.max_epochs)]
    return out


def job_spec(settings: Settings, template: str | None = None) -> v1.CustomJobSpec:
    """job.json with its ${PLACEHOLDERS} filled, parsed strictly (unknown fields fail)."""
    text = template if template is not None else JOB_TEMPLATE.read_text()
    values = {
        "MACHINE_TYPE": settings.machine_type,
        "IMAGE": settings.image,
        "MODELS_URI": str(settings.models),
        "SERVICE_ACCOUNT": settings.service_account,
        "BASE_OUTPUT": str(settings.staging_bucket.join("vertex", settings.job_name)),
    }
    # JSON-escaped, so a value can never break out of its string.
    filled = string.Template(text).substitute({k: json.dumps(v)[1:-1] for k, v in values.items()})
    try:
        spec = v1.CustomJobSpec.from_json(filled, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise ValueError(f"{JOB_TEMPLATE.name}: {error}") from error
    if len(spec.worker_pool_specs) != 1:
        raise ValueError("job.json: the training runs on exactly one worker pool")
    spec.worker_pool_specs[0].container_spec.args.extend(job_args(settings))
    return spec


def job_labels(settings: Settings) -> dict[str, str]:
    return labels.sanitize(
        {
            "mirai_model": MODEL_NAME,
            "mirai_versions": "_".join(settings.versions) or "all",
            "source": settings.source[:12] or "unknown",
            "managed_by": "mirai-scripts-train",
            **settings.extra_labels,
        }
    )


def custom_job_request(settings: Settings, template: str | None = None) -> v1.CreateCustomJobRequest:
    check(settings)
    job = v1.CustomJob(
        display_name=settings.job_name,
        job_spec=job_spec(settings, template),
        labels=job_labels(settings),
    )
    return v1.CreateCustomJobRequest(parent=settings.location, custom_job=job)


# === the Model Registry ===


def model_id(display_name: str) -> str:
    """The Model's resource id from its display name: [a-z0-9_-], a letter first, <= 63."""
    text = re.sub(r"[^a-z0-9_-]", "-", display_name.lower()).strip("-_")
    if not text or not text[0].isalpha():
        text = "m-" + text
    return text[:63].rstrip("-_")


def version_alias(version: str) -> str:
    """A version alias for the card's version (`1.1.0` -> `v1-1-0`): Vertex's format
    [a-z][a-zA-Z0-9-]{0,126}[a-z0-9], so it can never be mistaken for a numeric version id."""
    text = "v" + re.sub(r"[^a-zA-Z0-9-]", "-", version)
    text = re.sub(r"-+", "-", text).rstrip("-")[:128]
    if not re.fullmatch(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]", text):
        raise ValueError(f"version {version!r} gives no valid version alias ({text!r})")
    return text


def model_resource(settings: Settings) -> str:
    return f"{settings.location}/models/{model_id(settings.display_name)}"


def upload_model_request(settings: Settings, card: dict, parent_exists: bool) -> v1.UploadModelRequest:
    """Registers one trained version. The first version creates the Model (`model_id`); later
    ones are versions of it (`parent_model`) — the two forms the API accepts."""
    check(settings)
    name, version = card["name"], card["version"]
    folder = layout.version_dir(settings.models, name, version)
    test = card["metrics"]["test"]
    extra = {"source": settings.source[:12]} if settings.source else {}
    model = v1.Model(
        display_name=settings.display_name,
        description=card["description"],
        version_aliases=[version_alias(version)],
        version_description=(
            f"{name} {version}, created {card['created_at']}: test MAE {test['mae']['model']:.6g} "
            f"(random walk {test['mae']['random_walk']:.6g}), pinball {test['pinball']['model']:.6g}, "
            f"coverage {test['coverage_90']['model']:.4f}; card.json in {folder}"
        ),
        artifact_uri=str(folder),
        # UploadModel needs a container for custom models. This is the prediction service's
        # image: the registry is the catalogue; serving stays in GKE (docs/ml-ops.md).
        container_spec=v1.ModelContainerSpec(image_uri=settings.serving_image),
        labels=labels.card_labels(card, extra),
    )
    if parent_exists:
        return v1.UploadModelRequest(parent=settings.location, parent_model=model_resource(settings), model=model)
    return v1.UploadModelRequest(parent=settings.location, model_id=model_id(settings.display_name), model=model)


def as_json(message) -> str:
    """A request as the JSON the REST API takes (camelCase field names, fields left at their
    defaults omitted, keys sorted so two runs diff cleanly)."""
    return type(message).to_json(message, indent=2, sort_keys=True, always_print_fields_with_no_presence=False)
