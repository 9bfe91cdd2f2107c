"""Unit tests of `scripts/train/train --vertex`: label sanitising, the gs:// layout (against a
local GCS emulator, the official storage client talking to it), the requests as the SDK's own
messages, the dry run without network, and the container's entry point with a stand-in
trainer. No GCP project, no torch; seconds. Run by scripts/train/test."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import random
import shutil
import socket
import string
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build  # noqa: E402
import gcs  # noqa: E402
import labels  # noqa: E402
import launch  # noqa: E402
import layout  # noqa: E402
from google.cloud import aiplatform_v1 as v1  # noqa: E402

TRAIN = HERE.parent
MODELS = TRAIN.parents[1] / "services/prediction/models"
CARDS = {f"spx-lstm/{v}/card.json": (MODELS / "spx-lstm" / v / "card.json").read_bytes() for v in ("1.0.0", "1.1.0")}


def card(version: str = "1.1.0") -> dict:
    return json.loads(CARDS[f"spx-lstm/{version}/card.json"])


def settings(**over) -> build.Settings:
    base = dict(
        project="mirai-staging",
        region="europe-west4",
        staging_bucket=layout.GcsUri.parse("gs://mirai-staging-ml"),
        models=layout.GcsUri.parse("gs://mirai-staging-ml/models"),
        display_name="mirai-spx-lstm",
        image="europe-west4-docker.pkg.dev/mirai-staging/mirai/mirai-train:abc123",
        serving_image="europe-west4-docker.pkg.dev/mirai-staging/mirai/mirai-prediction:abc123",
        service_account="mirai-train@mirai-staging.iam.gserviceaccount.com",
        versions=("1.1.0",),
        job_name="mirai-train-spx-lstm-20261207-000000",
        source="abc123def456",
    )
    base.update(over)
    return build.Settings(**base)


def constant(path: Path, name: str):
    """A module-level constant of a file this venv cannot import (train.py needs torch,
    artifacts.py numpy)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(name)


# === labels ===


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.008640219718056385, "0_00864022"),
        (-3.02662467342959, "-3_02662"),
        (1.2e-07, "1_2e-07"),
        (577, "577"),
        (True, "true"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        ("1.1.0", "1_1_0"),
        ("Spx LSTM/Ü", "spx_lstm__"),
        ("2018-01-02", "2018-01-02"),
        ("", ""),
        ("x" * 80, "x" * 63),
    ],
)
def test_label_values_are_sanitised(value, expected):
    assert labels.sanitize_value(value) == expected


@pytest.mark.parametrize(
    "key, expected",
    [("test_mae", "test_mae"), ("Test.MAE", "test_mae"), ("90_coverage", "k_90_coverage"),
     ("_x", "k__x"), ("-x", "k_-x"), ("a" * 70, "a" * 63)],
)
def test_label_keys_start_with_a_letter(key, expected):
    assert labels.sanitize_key(key) == expected


def test_label_key_that_sanitises_to_nothing_is_refused():
    with pytest.raises(labels.LabelError):
        labels.sanitize_key("")


def test_colliding_keys_are_refused_not_dropped():
    with pytest.raises(labels.LabelError, match="collide"):
        labels.sanitize({"test.mae": 1, "test_mae": 2})


def test_more_than_64_labels_are_refused():
    with pytest.raises(labels.LabelError, match="at most 64"):
        labels.sanitize({f"k{i}": i for i in range(65)})


def test_any_input_sanitises_to_valid_labels():
    rng = random.Random(23)
    alphabet = string.printable + "äßÜ日本"
    for _ in range(500):
        raw = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90))) or "k": rng.choice(
            [rng.random() * 10 ** rng.randint(-9, 9), rng.randint(-(10 ** 12), 10 ** 12),
             "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90)))])}
        try:
            out = labels.sanitize(raw)
        except labels.LabelError:
            continue  # only an empty key, which random keys of printable text cannot give
        assert labels.is_valid(out), (raw, out)


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_card_labels_carry_the_cards_metrics_and_are_valid(version):
    c = card(version)
    out = labels.card_labels(c)
    assert labels.is_valid(out)
    assert out["mirai_model"] == "spx-lstm" and out["mirai_version"] == version.replace(".", "_")
    test = c["metrics"]["test"]
    for key, value in [("test_mae", test["mae"]["model"]), ("test_pinball", test["pinball"]["model"]),
                       ("test_coverage_90", test["coverage_90"]["model"]), ("test_hit_rate", test["hit_rate"]["model"]),
                       ("validation_pinball", c["metrics"]["validation"]["pinball"]["model"])]:
        # The label reads back as the number to 6 significant digits.
        assert float(out[key].replace("_", ".")) == pytest.approx(value, rel=1e-5)
    assert out["test_n"] == str(test["n"])
    assert out["onnx_sha256"] == c["onnx"]["sha256"][:16]


# === gs:// layout ===


@pytest.mark.parametrize(
    "uri, bucket, path",
    [("gs://b-ml", "b-ml", ""), ("gs://b-ml/", "b-ml", ""), ("gs://b-ml/models/", "b-ml", "models"),
     ("gs://my.bucket_1/a/b", "my.bucket_1", "a/b")],
)
def test_gs_uris_parse(uri, bucket, path):
    u = layout.GcsUri.parse(uri)
    assert (u.bucket, u.path) == (bucket, path)


@pytest.mark.parametrize("uri", ["s3://b/x", "gs://", "gs://B/x", "gs://ab", "gs://b-ml/a//b", "gs://b-ml/../x",
                                 "/tmp/models", "gs://-b/x"])
def test_bad_gs_uris_are_refused(uri):
    with pytest.raises(layout.LayoutError):
        layout.GcsUri.parse(uri)


def test_models_prefix_defaults_to_the_staging_bucket():
    assert str(layout.models_uri("gs://stage/x/")) == "gs://stage/x/models"
    assert str(layout.models_uri("gs://stage", "gs://models-bucket")) == "gs://models-bucket"


def test_version_objects_mirror_the_local_folder():
    models = layout.GcsUri.parse("gs://b-ml/models")
    objects = layout.version_objects(models, "spx-lstm", "1.1.0")
    assert {str(u) for u in objects.values()} == {f"gs://b-ml/models/spx-lstm/1.1.0/{f}" for f in
                                                   ("model.onnx", "card.json", "MODEL_CARD.md", "golden.json", "test_forecasts.csv")}
    # Every file of the committed version folder is uploaded, nothing else.
    assert set(objects) == {p.name for p in (MODELS / "spx-lstm/1.1.0").iterdir()}
    assert list(objects)[-2:] == ["card.json", "MODEL_CARD.md"]  # the card after what it points at
    assert str(layout.registry_uri(models)) == "gs://b-ml/models/registry.json"
    with pytest.raises(layout.LayoutError):
        layout.version_objects(models, "spx-lstm", "../1.1.0")


def test_registry_from_the_cards_equals_the_committed_registry():
    assert layout.registry_document(CARDS) == json.loads((MODELS / "registry.json").read_text())


def test_registry_rules_match_the_local_writer():
    assert build.MODEL_NAME == constant(TRAIN / "train.py", "MODEL_NAME")
    specs = ast.parse((TRAIN / "train.py").read_text())
    versions = sorted({n.args[0].value for n in ast.walk(specs) if isinstance(n, ast.Call)
                       and getattr(n.func, "id", None) == "Spec" and n.args})
    assert tuple(versions) == launch.VERSIONS


def test_a_card_in_the_wrong_folder_is_refused():
    with pytest.raises(layout.LayoutError, match="its folder is spx-lstm/9.9.9"):
        layout.registry_document({"spx-lstm/9.9.9/card.json": CARDS["spx-lstm/1.1.0/card.json"]})


def test_card_objects_are_found_two_levels_deep_only():
    models = layout.GcsUri.parse("gs://b-ml/models")
    assert layout.is_card_object(models, "models/spx-lstm/1.1.0/card.json") == "spx-lstm/1.1.0/card.json"
    assert layout.is_card_object(models, "models/card.json") is None
    assert layout.is_card_object(models, "models/a/b/c/card.json") is None
    assert layout.is_card_object(models, "other/spx-lstm/1.1.0/card.json") is None


@pytest.fixture
def gcs_emulator(monkeypatch):
    """A local GCS server (gcp-storage-emulator, in memory) and the official client on it."""
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="b-ml")
    server.start()
    try:
        host, port = server._api._httpd.server_address[:2]
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{host}:{port}")
        yield storage.Client(project="test", credentials=AnonymousCredentials())
    finally:
        server.stop()


def download_tree(client, models: layout.GcsUri, into: Path) -> None:
    for blob in client.list_blobs(models.bucket, prefix=models.path + "/"):
        target = into / blob.name[len(models.path) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.download_as_bytes())


def test_uploaded_versions_read_back_as_the_local_models_folder(gcs_emulator, tmp_path):
    models = layout.GcsUri.parse("gs://b-ml/models")
    for version in ("1.0.0", "1.1.0"):
        gcs.upload_version(gcs_emulator, models, MODELS / "spx-lstm" / version, "spx-lstm", version)
    registry = gcs.write_registry(gcs_emulator, models)
    download_tree(gcs_emulator, models, tmp_path)
    local = sorted(p.relative_to(MODELS) for p in MODELS.rglob("*") if p.is_file() and p.name != "README.md")
    remote = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert remote == local
    for rel in local:
        if rel.name != "registry.json":
            assert (tmp_path / rel).read_bytes() == (MODELS / rel).read_bytes(), rel
    # The same registry as the local one, so the service reads either the same way.
    assert json.loads((tmp_path / "registry.json").read_text()) == json.loads((MODELS / "registry.json").read_text())
    assert registry == gcs.read_registry(gcs_emulator, models)
    assert json.loads(gcs.read_card(gcs_emulator, models, "spx-lstm", "1.1.0")) == card("1.1.0")


def test_a_new_version_joins_the_registry_without_dropping_others(gcs_emulator):
    models = layout.GcsUri.parse("gs://b-ml/models")
    gcs.upload_version(gcs_emulator, models, MODELS / "spx-lstm/1.0.0", "spx-lstm", "1.0.0")
    assert [e["version"] for e in gcs.write_registry(gcs_emulator, models)["models"]] == ["1.0.0"]
    gcs.upload_version(gcs_emulator, models, MODELS / "spx-lstm/1.1.0", "spx-lstm", "1.1.0")
    assert [e["version"] for e in gcs.write_registry(gcs_emulator, models)["models"]] == ["1.0.0", "1.1.0"]


def test_a_version_folder_missing_a_file_is_not_uploaded(gcs_emulator, tmp_path):
    shutil.copytree(MODELS / "spx-lstm/1.1.0", tmp_path / "v")
    (tmp_path / "v/golden.json").unlink()
    with pytest.raises(FileNotFoundError, match="golden.json"):
        gcs.upload_version(gcs_emulator, layout.GcsUri.parse("gs://b-ml/models"), tmp_path / "v", "spx-lstm", "1.1.0")


def test_registry_write_retries_when_another_writer_won(gcs_emulator):
    """The emulator ignores preconditions: the race is played by a client whose first write
    fails as GCS answers a lost if_generation_match (412)."""
    from google.api_core.exceptions import PreconditionFailed

    models = layout.GcsUri.parse("gs://b-ml/models")
    gcs.upload_version(gcs_emulator, models, MODELS / "spx-lstm/1.1.0", "spx-lstm", "1.1.0")
    real_bucket = gcs_emulator.bucket
    attempts = []

    class Racing:
        def __init__(self, name):
            self._bucket = real_bucket(name)

        def __getattr__(self, attr):
            return getattr(self._bucket, attr)

        def blob(self, name):
            blob = self._bucket.blob(name)
            upload = blob.upload_from_string

            def racing_upload(data, **kw):
                attempts.append(kw.get("if_generation_match"))
                if len(attempts) == 1:
                    raise PreconditionFailed("412 conditionNotMet")
                return upload(data, **kw)

            blob.upload_from_string = racing_upload
            return blob

    gcs_emulator.bucket = Racing
    registry = gcs.write_registry(gcs_emulator, models)
    assert len(attempts) == 2 and attempts[0] == 0  # 0: "only if the object does not exist yet"
    assert [e["version"] for e in registry["models"]] == ["1.1.0"]


def test_the_container_entry_point_trains_then_writes_the_layout(gcs_emulator, monkeypatch, tmp_path, capsys):
    """job.py with a stand-in for train.py (torch is not here): it must pass the versions and
    the scratch folder to the trainer, upload what the trainer wrote and rebuild the registry."""
    import types

    import job

    seen = {}

    def fake_main(argv):
        seen["argv"] = argv
        out = Path(argv[argv.index("--out") + 1])
        shutil.copytree(MODELS / "spx-lstm/1.1.0", out / "spx-lstm/1.1.0")
        return 0

    monkeypatch.setitem(sys.modules, "train", types.SimpleNamespace(main=fake_main, MODEL_NAME="spx-lstm"))
    from google.cloud import storage

    monkeypatch.setattr(storage, "Client", lambda *a, **k: gcs_emulator)
    assert job.main(["--models-uri", "gs://b-ml/models", "--version", "1.1.0", "--max-epochs", "2"]) == 0
    assert seen["argv"][2:] == ["--version", "1.1.0", "--max-epochs", "2"]
    registry = gcs.read_registry(gcs_emulator, layout.GcsUri.parse("gs://b-ml/models"))
    assert [(e["version"], e["card"]) for e in registry["models"]] == [("1.1.0", "spx-lstm/1.1.0/card.json")]
    assert "uploaded gs://b-ml/models/spx-lstm/1.1.0/model.onnx" in capsys.readouterr().out


# === the requests ===


def test_custom_job_request_runs_the_training_container_on_the_models_prefix():
    s = settings()
    req = build.custom_job_request(s)
    assert isinstance(req, v1.CreateCustomJobRequest)
    assert req.parent == "projects/mirai-staging/locations/europe-west4"
    spec = req.custom_job.job_spec
    (pool,) = spec.worker_pool_specs
    assert pool.container_spec.image_uri == s.image
    assert list(pool.container_spec.args) == ["--models-uri", "gs://mirai-staging-ml/models", "--version", "1.1.0"]
    assert pool.replica_count == 1 and pool.machine_spec.machine_type == "n1-standard-4"
    assert spec.service_account == s.service_account
    assert spec.base_output_directory.output_uri_prefix == "gs://mirai-staging-ml/vertex/mirai-train-spx-lstm-20261207-000000"
    assert labels.is_valid(dict(req.custom_job.labels))
    # What --dry-run prints is this message, and it reads back as the same message.
    assert v1.CreateCustomJobRequest.from_json(build.as_json(req)) == req


def test_all_versions_and_an_epoch_cap_reach_the_container():
    args = list(build.custom_job_request(settings(versions=(), max_epochs=3)).custom_job.job_spec
                .worker_pool_specs[0].container_spec.args)
    assert args == ["--models-uri", "gs://mirai-staging-ml/models", "--max-epochs", "3"]


def test_job_template_is_parsed_strictly():
    bad = build.JOB_TEMPLATE.read_text().replace('"replicaCount"', '"replicaCnt"')
    with pytest.raises(ValueError):
        build.custom_job_request(settings(), template=bad)


def test_a_value_cannot_break_out_of_the_job_spec():
    evil = 'x","command":["sh'
    req = build.custom_job_request(settings(image=evil))
    assert req.custom_job.job_spec.worker_pool_specs[0].container_spec.image_uri == evil
    assert list(req.custom_job.job_spec.worker_pool_specs[0].container_spec.command) == []


@pytest.mark.parametrize("bad", [dict(project="Mirai Staging"), dict(region="europe west4"), dict(display_name="")])
def test_settings_the_api_would_refuse_are_refused_first(bad):
    with pytest.raises(ValueError):
        build.custom_job_request(settings(**bad))


def test_upload_request_registers_the_version_folder_with_the_cards_labels():
    s, c = settings(), card("1.1.0")
    req = build.upload_model_request(s, c, parent_exists=False)
    assert isinstance(req, v1.UploadModelRequest)
    assert req.parent == s.location and req.model_id == "mirai-spx-lstm" and not req.parent_model
    assert req.model.artifact_uri == "gs://mirai-staging-ml/models/spx-lstm/1.1.0"
    assert req.model.display_name == "mirai-spx-lstm"
    assert list(req.model.version_aliases) == ["v1-1-0"]
    assert req.model.container_spec.image_uri == s.serving_image
    assert dict(req.model.labels) == labels.card_labels(c, {"source": "abc123def456"})
    assert v1.UploadModelRequest.from_json(build.as_json(req)) == req


def test_a_later_version_is_uploaded_under_the_existing_model():
    req = build.upload_model_request(settings(), card("1.0.0"), parent_exists=True)
    assert req.parent_model == "projects/mirai-staging/locations/europe-west4/models/mirai-spx-lstm"
    assert not req.model_id


@pytest.mark.parametrize("name, expected", [("mirai-spx-lstm", "mirai-spx-lstm"), ("Mirai SPX/LSTM", "mirai-spx-lstm"),
                                            ("1st model", "m-1st-model"), ("x" * 80, "x" * 63)])
def test_model_ids(name, expected):
    assert build.model_id(name) == expected


@pytest.mark.parametrize("version, alias", [("1.1.0", "v1-1-0"), ("2.0.0-rc.1", "v2-0-0-rc-1"), ("10", "v10")])
def test_version_aliases(version, alias):
    assert build.version_alias(version) == alias


# === the dry run ===


def test_dry_run_prints_both_requests_from_the_committed_cards_without_network(monkeypatch):
    def no_network(*_a, **_k):
        raise AssertionError("the dry run opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for var in ("MIRAI_VERTEX_IMAGE", "MIRAI_MODELS_URI", "MIRAI_VERTEX_REGION"):
        monkeypatch.delenv(var, raising=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert launch.main(["--dry-run", "--project", "mirai-staging", "--staging-bucket", "gs://mirai-staging-ml"]) == 0
    blocks = [b for b in out.getvalue().split("\n# ") if b.strip()]
    assert len(blocks) == 3  # the job, then one upload per committed version
    job = v1.CreateCustomJobRequest.from_json(blocks[0].split("\n", 1)[1])
    assert job.custom_job.job_spec.worker_pool_specs[0].container_spec.args[:2] == ["--models-uri", "gs://mirai-staging-ml/models"]
    for block, version in zip(blocks[1:], ("1.0.0", "1.1.0")):
        upload = v1.UploadModelRequest.from_json(block.split("\n", 1)[1])
        assert upload.model.artifact_uri == f"gs://mirai-staging-ml/models/spx-lstm/{version}"
        assert upload.model.labels["test_mae"] == labels.sanitize_value(card(version)["metrics"]["test"]["mae"]["model"])


def test_missing_project_or_bucket_is_named():
    with pytest.raises(SystemExit, match="--project and --staging-bucket required"):
        launch.settings_of(launch.parser().parse_args(["--project", ""]), "")
