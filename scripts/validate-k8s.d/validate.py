"""The offline validation pipeline of charts/mirai, istio/, k8s/ and the image build.

Run through scripts/validate-k8s, which installs the pinned tools (cached) and calls this with
their locations. Every stage prints what it checks; the first stage that finds a problem prints
every problem it found and the run fails with the stage's name. After the real inputs pass, the
deliberately broken fixtures (fixtures.yaml) run through the same stage functions, and each must
be caught by its stage with the expected message: a stage that stops catching its class of error
fails the run too.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import difflib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml

import k8s_checks

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHART = ROOT / "charts" / "mirai"
RELEASE = "mirai"
NAMESPACE = "mirai"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.30.0", "1.37.0")
# k8s/ files generated from the chart: path → (values set, extra values, templates to keep).
GENERATED = {
    "k8s/overlays/gke/generated.yaml": ("gke", {}, None),
    "k8s/overlays/gke-mesh-off/generated.yaml": ("mesh-off", {}, None),
    "k8s/overlays/minimal/generated.yaml": ("minimal", {}, None),
    "k8s/prerequisites/base/workload-identity.generated.yaml": (
        "gke", {"gcp": {"configConnector": {"iam": {"enabled": True}}}}, {"templates/gcp-iam.yaml"}),
}
KUSTOMIZE_DIRS = ["istio", "k8s/prerequisites", "k8s/prerequisites/mesh-off",
                  "k8s/overlays/gke", "k8s/overlays/gke-mesh-off", "k8s/overlays/minimal"]


class StageFailed(Exception):
    def __init__(self, stage: str, problems: list[str]):
        super().__init__(stage)
        self.stage = stage
        self.problems = problems


class Tools:
    def __init__(self, args: argparse.Namespace):
        self.venv_bin = Path(sys.executable).parent
        self.npm = Path(args.npm)
        self.promtool = Path(args.promtool)
        self.out = Path(args.out)

    def bin(self, name: str) -> str:
        return str(self.venv_bin / name)


def say(message: str) -> None:
    print(f"validate-k8s: {message}", flush=True)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, **kwargs)


# === Rendering ====================================================================================

def helm():
    import helm_python  # imported late: scripts/validate-k8s puts it on the path

    # Helm's own log lines (lint reports `fail` calls as INFO) would interleave with ours; every
    # finding reaches us as data or as an exception.
    helm_python.disable_logging()
    return helm_python


def value_sets() -> dict[str, Path]:
    """ci/<name>-values.yaml → name."""
    sets = {p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))}
    if not sets:
        raise StageFailed("helm render", [f"no value sets in {CHART / 'ci'}"])
    return sets


def load_values(path: Path, extra: dict | None = None) -> dict:
    values = yaml.safe_load(path.read_text()) or {}
    return deep_merge(values, extra or {})


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(values: dict, chart: Path = CHART) -> dict[str, str]:
    """template path → rendered text (empty ones dropped); raises on template/schema errors."""
    h = helm()
    loaded = h.Chart.load(str(chart))
    try:
        out = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    finally:
        loaded.close()
    return {k.split("/", 1)[1]: v for k, v in sorted(out.items()) if v.strip() and not k.endswith("NOTES.txt")}


class quiet_stderr:
    """Silences file descriptor 2 (Go code in libhelm writes there directly)."""

    def __enter__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)


def split_docs(text: str, source: str) -> list[tuple[str, dict]]:
    out = []
    for doc in yaml.safe_load_all(text):
        if doc is not None:
            out.append((source, doc))
    return out


def as_stream(rendered: dict[str, str]) -> str:
    parts = []
    for source, text in rendered.items():
        body = text.strip("\n")
        if not body.startswith("---"):
            body = "---\n" + body
        parts.append(f"# Source: {source}\n{body}\n")
    return "".join(parts)


# === Stage: Helm ==================================================================================

def stage_helm_lint(sets: dict[str, dict]) -> list[str]:
    h = helm()
    problems = []
    for name, values in sets.items():
        with quiet_stderr():  # Helm logs template `fail` calls itself; lint findings come as data
            report = h.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSIONS[0]}")
        for message in report.get("messages", []):
            if message["severity"] >= 2:
                problems.append(f"{name}: {message['path']}: {message['error']}")
        problems += [f"{name}: {e}" for e in report.get("errors", [])]
    return problems


def stage_helm_render(sets: dict[str, dict]) -> tuple[list[str], dict[str, dict[str, str]]]:
    problems, rendered = [], {}
    for name, values in sets.items():
        try:
            rendered[name] = render(values)
        except Exception as error:  # HelmRenderError / HelmValuesError: the message says where
            problems.append(f"{name}: {' '.join(str(error).split())}")
    return problems, rendered


def stage_helm_dry_run(sets: dict[str, dict], rendered: dict[str, dict[str, str]]) -> list[str]:
    h = helm()
    problems = []
    config = h.Config(storage_driver="memory", namespace=NAMESPACE)
    try:
        for name, values in sets.items():
            try:
                release = config.install(str(CHART), RELEASE, values, namespace=NAMESPACE, dry_run="client")
            except Exception as error:
                problems.append(f"{name}: install --dry-run=client: {error}")
                continue
            if not release.get("notes", "").strip():
                problems.append(f"{name}: NOTES.txt rendered empty")
            installed = sum(1 for _ in split_docs(release.get("manifest", ""), "manifest"))
            hooks = sum(1 for _, d in docs_of(rendered[name]) if dig(d, "metadata", "annotations", "helm.sh/hook"))
            expected = sum(1 for _ in docs_of(rendered[name])) - hooks
            if installed != expected:
                problems.append(f"{name}: the dry-run install has {installed} objects, the render {expected} (+{hooks} hooks)")
    finally:
        config.close()
    return problems


def docs_of(rendered: dict[str, str]) -> list[tuple[str, dict]]:
    out = []
    for source, text in rendered.items():
        out += split_docs(text, source)
    return out


def dig(obj: Any, *path: Any, default: Any = None) -> Any:
    return k8s_checks.dig(obj, *path, default=default)


# === Stage: schemas ===============================================================================

def is_core(api_version: str) -> bool:
    group = api_version.split("/")[0] if "/" in api_version else ""
    return group == "" or "." not in group or (group.endswith(".k8s.io") and not group.endswith(".x-k8s.io"))


@functools.lru_cache(maxsize=None)
def k8s_validator(version: str, kind: str, api_version: str):
    """kubernetes-validate's strict schema for a kind, as its validate() picks it, built once
    (its validate() reloads the 20 MB definitions file for every object)."""
    import jsonschema
    from kubernetes_validate import utils as kvu
    from referencing import Registry, Resource

    schema_version = [x for x in kvu.all_versions() if kvu.major_minor(x) <= kvu.major_minor(version)][-1]
    schema_dir = f"kubernetes-json-schema/v{schema_version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kvu.schema_contents(f"{schema_dir}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        raise kvu.SchemaNotFoundError(version=kvu.major_minor(version), kind=kind, api_version=api_version)
    definitions = _k8s_definitions(schema_dir, version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=None)
def _k8s_definitions(schema_dir: str, version: str) -> Any:
    from kubernetes_validate import utils as kvu

    return kvu.schema_contents(f"{schema_dir}/_definitions.json", version)


def stage_kubernetes_validate(docs: list[tuple[str, dict]]) -> list[str]:
    from kubernetes_validate import utils as kvu

    problems = []
    core = [(source, doc) for source, doc in docs if is_core(doc.get("apiVersion", ""))]
    if not core:
        return ["no Kubernetes objects to validate (did the render produce nothing?)"]
    for source, doc in core:
        for version in KUBE_VERSIONS:
            where = f"{source}: {k8s_checks.ident(doc)} (Kubernetes {version})"
            try:
                validator = k8s_validator(version, doc.get("kind", ""), doc.get("apiVersion", ""))
            except (kvu.SchemaNotFoundError, kvu.InvalidSchemaError) as error:
                # The kubernetes-validate CLI only warns here (exit 0): a removed apiVersion or an
                # unknown kind. Here it fails.
                problems.append(f"{where}: {getattr(error, 'message', error)}")
                continue
            for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
                path = ".".join(str(p) for p in error.path)
                problems.append(f"{where}: {path}: {error.message}")
    return problems


def stage_custom_resources(tools: Tools, docs: list[tuple[str, dict]], label: str) -> list[str]:
    objects = [{"id": f"{s}: {k8s_checks.ident(d)}", "object": d} for s, d in docs if not is_core(d.get("apiVersion", ""))]
    if not objects:
        return []
    work = Path(tempfile.mkdtemp(prefix=f"crds-{label}-", dir=tools.npm))
    try:
        (work / "objects.json").write_text(json.dumps(objects))
        script = work / "crds.mjs"
        shutil.copy(HERE / "crds.mjs", script)
        result = run(["node", str(script), str(work / "objects.json"), str(HERE / "schemas"), str(work)])
        if result.returncode != 0:
            return [f"crds.mjs failed: {result.stderr.strip()[:2000]}"]
        return [f"{p['id']}: [{p['check']}] {p['message']}" for p in json.loads(result.stdout)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# === Stage: linters =============================================================================

def stage_checkov(tools: Tools, files: list[Path], framework: str = "kubernetes") -> list[str]:
    cmd = [tools.bin("checkov"), "--framework", framework, "--skip-download", "--quiet", "--compact",
           "--config-file", str(HERE / "checkov.yaml"), "-o", "json"]
    for f in files:
        cmd += ["-f", str(f)]
    result = run(cmd, env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"})
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        if result.returncode == 0 and not result.stdout.strip().startswith(("[", "{")):
            return []  # nothing to scan
        return [f"checkov failed (exit {result.returncode}): {(result.stdout + result.stderr)[-2000:]}"]
    reports = data if isinstance(data, list) else [data]
    problems = []
    scanned = 0
    for report in reports:
        summary = report.get("summary", {})
        scanned += summary.get("passed", 0) + summary.get("failed", 0)
        for check in report.get("results", {}).get("failed_checks", []):
            problems.append(f"{Path(check['file_path']).name}: {check['resource']}: {check['check_id']} {check['check_name']}")
    if scanned == 0:
        problems.append(f"checkov scanned nothing ({framework}: {', '.join(f.name for f in files)})")
    return problems


def stage_yamllint(tools: Tools, files: list[Path]) -> list[str]:
    result = run([tools.bin("yamllint"), "-c", str(HERE / "yamllint.yaml"), "-f", "parsable", *map(str, files)])
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 and not lines:
        return [f"yamllint failed: {result.stderr.strip()[:2000]}"]
    return [line.replace(str(ROOT) + "/", "") for line in lines]


def stage_hadolint(tools: Tools, dockerfile: Path) -> list[str]:
    result = run([tools.bin("hadolint"), "--no-color", str(dockerfile)])
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()] if result.returncode else []


# === Stage: kustomize and drift ===================================================================

def stage_kustomize(tools: Tools, dirs: list[Path]) -> tuple[list[str], dict[str, list[tuple[str, dict]]]]:
    problems, outputs = [], {}
    for d in dirs:
        result = run([tools.bin("kubectl"), "kustomize", str(d)])
        label = str(d.relative_to(ROOT)) if d.is_relative_to(ROOT) else str(d)
        if result.returncode != 0:
            problems.append(f"{label}: {result.stderr.strip()}")
            continue
        docs = split_docs(result.stdout, f"kustomize {label}")
        if not docs:
            problems.append(f"{label}: kustomize produced no objects")
        outputs[label] = docs
    return problems, outputs


GENERATED_HEADER = """\
# GENERATED from charts/mirai (values: charts/mirai/ci/{values}-values.yaml{extra}) by
# `scripts/validate-k8s --write-k8s`. Do not edit: change the chart, then regenerate.
# scripts/validate-k8s fails while this file differs from what the chart renders.
# For kubectl/kustomize users: Helm hooks are plain objects here (the migration Jobs run beside
# the rollout; the services also migrate at start). Delete finished Jobs before applying a new
# version: kubectl -n mirai delete job -l app.kubernetes.io/component=hooks
"""


# Renders already made by the helm render stage, by value set (generated_content reuses them).
RENDER_CACHE: dict[str, dict[str, str]] = {}


def generated_content(sets_values: dict[str, dict], path: str) -> str:
    set_name, extra, keep = GENERATED[path]
    if not extra and set_name in RENDER_CACHE:
        rendered = RENDER_CACHE[set_name]
    else:
        rendered = render(deep_merge(sets_values[set_name], extra))
    if keep is not None:
        rendered = {k: v for k, v in rendered.items() if k in keep}
    docs = []
    for _, doc in docs_of(rendered):
        meta = doc.setdefault("metadata", {})
        if (meta.get("annotations") or {}).get("helm.sh/hook") == "test":
            continue  # `helm test` Pods and their policies: only with Helm
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("helm.sh/")}
        if annotations:
            meta["annotations"] = annotations
        else:
            meta.pop("annotations", None)
        labels = meta.get("labels") or {}
        if labels.get("app.kubernetes.io/managed-by") == "Helm":
            labels["app.kubernetes.io/managed-by"] = "kustomize"
        docs.append(doc)
    extra_note = f", plus {json.dumps(extra, separators=(',', ':'))}" if extra else ""
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=1000, explicit_start=True)
    return GENERATED_HEADER.format(values=set_name, extra=extra_note) + body


def stage_drift(sets_values: dict[str, dict], write: bool, read: Callable[[str], str] | None = None,
                only: list[str] | None = None) -> list[str]:
    problems = []
    read = read or (lambda p: (ROOT / p).read_text() if (ROOT / p).exists() else "")
    for path in only or GENERATED:
        expected = generated_content(sets_values, path)
        target = ROOT / path
        if write:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(expected)
            say(f"   wrote {path}")
            continue
        actual = read(path)
        if actual != expected:
            diff = list(difflib.unified_diff(actual.splitlines(), expected.splitlines(), f"{path} (on disk)", f"{path} (from the chart)", lineterm="", n=1))
            shown = "\n      ".join(diff[:30]) + ("\n      ..." if len(diff) > 30 else "")
            problems.append(f"{path} differs from the chart; run scripts/validate-k8s --write-k8s\n      {shown}")
    return problems


# === Stage: Prometheus rules, dashboard =========================================================

def rule_groups(docs: list[tuple[str, dict]]) -> list[dict]:
    return [g for _, d in docs if d.get("kind") in ("Rules", "PrometheusRule") for g in dig(d, "spec", "groups", default=[])]


def stage_promtool_check(tools: Tools, groups: list[dict], work: Path, label: str) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    rules_file = work / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    result = run([str(tools.promtool), "check", "rules", str(rules_file)])
    if result.returncode != 0:
        return [f"{label}: {line}" for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return []


def stage_promtool_test(tools: Tools, groups: list[dict], test_file: Path, work: Path) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    test = yaml.safe_load(test_file.read_text())
    test["rule_files"] = ["rules.yaml"]
    (work / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = run([str(tools.promtool), "test", "rules", "test.yaml"], cwd=work)
    if result.returncode != 0:
        return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return []


def registered_metrics() -> set[str]:
    """Metric families the Rust code registers (Metrics::register prefixes them with mirai_)."""
    names = set()
    for path in list(ROOT.glob("services/**/src/**/*.rs")) + list(ROOT.glob("gateway/src/**/*.rs")):
        for match in re.finditer(r"\.register\(\s*\"([a-z0-9_]+)\"", path.read_text()):
            names.add("mirai_" + match.group(1))
    return names


def metric_problems(expr: str, known: set[str], recorded: set[str], where: str) -> list[str]:
    problems = []
    for name in set(re.findall(r"\b(mirai_[a-z0-9_]+)\b", expr)):
        base = re.sub(r"_(total|bucket|sum|count|created)$", "", name)
        if name not in known and base not in known:
            problems.append(f"{where}: {name} is not a metric the services register")
    for name in set(re.findall(r"\b(mirai:[a-z0-9_:]+)", expr)):
        if name not in recorded:
            problems.append(f"{where}: {name} is not recorded by the chart's rules")
    return problems


def stage_dashboards(tools: Tools, groups: list[dict], work: Path, folder: Path | None = None) -> list[str]:
    known = registered_metrics()
    if not known:
        return ["found no metric registrations in the Rust sources (Metrics::register)"]
    recorded = {r["record"] for g in groups for r in g.get("rules", []) if "record" in r}
    problems = []
    for g in groups:
        for r in g.get("rules", []):
            problems += metric_problems(r["expr"], known, recorded, f"rule {r.get('record') or r.get('alert')}")
    for path in sorted((folder or CHART / "files" / "dashboards").glob("*.json")):
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            problems.append(f"{path.name}: not JSON: {error}")
            continue
        for key in ("title", "uid", "panels", "schemaVersion"):
            if key not in dashboard:
                problems.append(f"{path.name}: no {key}")
        rules = []
        for panel in dashboard.get("panels", []):
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                where = f"{path.name}: panel {panel.get('id')} ({panel.get('title')}) {target.get('refId')}"
                problems += metric_problems(expr, known, recorded, where)
                concrete = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$namespace", "mirai")
                if "$" in re.sub(r"\$value", "", concrete):
                    problems.append(f"{where}: unknown template variable in {expr!r}")
                rules.append({"record": f"dashboard:panel_{panel.get('id')}_{target.get('refId')}", "expr": concrete})
        if rules:
            problems += stage_promtool_check(tools, [{"name": path.stem, "rules": rules}], work / path.stem, path.name)
    return problems


# === Stage: sources of truth ======================================================================

def parse_topology(source: str) -> dict:
    consts = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', source))
    topics_block = re.search(r"pub const ALL: &\[&str\] = &\[(.*?)\];", source, re.S)
    topics = [consts[n.strip()] for n in topics_block.group(1).split(",") if n.strip()] if topics_block else []
    subscriptions = [{"name": name, "topic": consts[topic]} for name, topic in
                     re.findall(r'SubscriptionSpec \{\s*name: "([^"]+)",\s*topic: topics::([A-Z_]+),\s*\}', source)]
    policy = {}
    block = re.search(r"impl Default for DeliveryPolicy.*?Self \{(.*?)\}", source, re.S)
    if block:
        for field, value in re.findall(r"(\w+): (?:Duration::from_secs\()?(\d+)\)?", block.group(1)):
            policy[field] = int(value)
    return {"topics": topics, "subscriptions": subscriptions, "policy": policy}


def stage_topology(values: dict, source: str) -> list[str]:
    code = parse_topology(source)
    if not code["topics"] or not code["subscriptions"] or len(code["policy"]) < 4:
        return ["could not read topics, SUBSCRIPTIONS and DeliveryPolicy::default() from topology.rs (did its shape change?)"]
    problems = []
    chart = values["pubsub"]["topology"]
    for what, mine, theirs in (("topic", chart["topics"], code["topics"]),
                               ("subscription", [f"{s['name']} -> {s['topic']}" for s in chart["subscriptions"]],
                                [f"{s['name']} -> {s['topic']}" for s in code["subscriptions"]])):
        for missing in sorted(set(theirs) - set(mine)):
            problems.append(f"topology.rs has {what} {missing}, charts/mirai/values.yaml pubsub.topology does not")
        for extra in sorted(set(mine) - set(theirs)):
            problems.append(f"charts/mirai/values.yaml pubsub.topology has {what} {extra}, topology.rs does not")
    delivery = values["pubsub"]["delivery"]
    pairs = (("ack_deadline", delivery["ackDeadlineSeconds"]), ("min_backoff", _secs(delivery["minimumBackoff"])),
             ("max_backoff", _secs(delivery["maximumBackoff"])), ("max_delivery_attempts", delivery["maxDeliveryAttempts"]))
    for field, mine in pairs:
        if code["policy"].get(field) != mine:
            problems.append(f"DeliveryPolicy::default().{field} is {code['policy'].get(field)}, pubsub.delivery says {mine}")
    return problems


def _secs(value: str) -> int:
    match = re.match(r"^(\d+)s$", value)
    return int(match.group(1)) if match else -1


WAREHOUSE_INPUTS = ["proto", "services/platform/src/events/envelope.rs", "services/platform/src/events/topology.rs",
                    "charts/mirai/files/warehouse"]


def stage_warehouse(edit: dict | None = None, work: Path | None = None) -> list[str]:
    """scripts/warehouse-schemas --check: the committed schemas are fresh and compatible with the
    protos (rules R1-R8, `scripts/warehouse-schemas --check --rules`). With `edit` ({file, replace:
    [old, new]}), on a copy of its inputs with one string replaced (the fixtures)."""
    cmd = [str(ROOT / "scripts" / "warehouse-schemas"), "--check"]
    if edit is not None:
        assert work is not None
        copy_root = work / "repo"
        for rel in WAREHOUSE_INPUTS:
            src, dst = ROOT / rel, copy_root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
        target = copy_root / edit["file"]
        text = target.read_text()
        old, new = edit["replace"]
        if old not in text:
            raise ValueError(f"{old!r} is not in {edit['file']}")
        target.write_text(text.replace(old, new, 1))
        cmd += ["--root", str(copy_root)]
    result = run(cmd)
    if result.returncode == 0:
        return []
    problems = [line.strip()[2:] for line in result.stderr.splitlines() if line.strip().startswith("- ")]
    return problems or [f"scripts/warehouse-schemas failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"]


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's .dockerignore semantics: the last matching pattern wins; `!` re-includes; a
    pattern matching a parent folder matches what is inside it."""
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        regex = "^" + re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + "(/.*)?$"
        if re.match(regex, path):
            excluded = not negate
    return excluded


def stage_images(values: dict, dockerignore: str | None = None) -> list[str]:
    problems = []
    dockerfile = (ROOT / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (mirai-[a-z-]+)\s*$", dockerfile, re.M))
    services = {f"mirai-{name}" for name in values["services"]}
    for missing in sorted(services - targets):
        problems.append(f"Dockerfile has no target {missing} (a service of the chart)")
    for extra in sorted(targets - services):
        problems.append(f"Dockerfile target {extra} is no service of the chart")
    cloudbuild = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    script = "\n".join(str(a) for step in cloudbuild.get("steps", []) for a in step.get("args", []))
    for target in sorted(targets):
        if not re.search(rf"\b{re.escape(target)}\b", script):
            problems.append(f"cloudbuild.yaml does not build {target}")
    for binary in sorted(services):
        if not re.search(rf"/usr/local/bin/{binary}\b", dockerfile):
            problems.append(f"Dockerfile never installs /usr/local/bin/{binary}")
    if not re.search(r"COPY --from=builder /out/models", dockerfile):
        problems.append("the prediction image does not copy the ONNX models (services/prediction/models)")
    ignore_text = dockerignore if dockerignore is not None else (ROOT / ".dockerignore").read_text()
    patterns = [line.strip() for line in ignore_text.splitlines() if line.strip() and not line.startswith("#")]
    members = re.findall(r'^\s*"([^"]+)",\s*$', (ROOT / "Cargo.toml").read_text().split("[workspace.package]")[0], re.M)
    needed = ["Cargo.toml", "Cargo.lock", "services/prediction/models/model.onnx",
              "services/stock-data/sample/sp500-2000.csv", "services/user/migrations/0001.sql"]
    needed += [f"{m}/Cargo.toml" for m in members] + [f"{m}/src/main.rs" for m in members]
    for path in needed:
        if dockerignore_excludes(patterns, path):
            problems.append(f".dockerignore leaves {path} out of the build context")
    for path in ("target/debug/x", ".git/HEAD", "charts/mirai/values.yaml", ".dev/pg/data"):
        if not dockerignore_excludes(patterns, path):
            problems.append(f".dockerignore sends {path} to the build context")
    return problems


# === Pipeline =====================================================================================

class Pipeline:
    def __init__(self, tools: Tools, only: set[str] | None):
        self.tools = tools
        self.only = only
        self.timings: list[tuple[str, float]] = []

    def stage(self, name: str, what: str, fn: Callable[[], list[str]]) -> None:
        if self.only and name not in self.only:
            return
        say(f"== {name}: {what}")
        started = time.monotonic()
        problems = fn()
        elapsed = time.monotonic() - started
        self.timings.append((name, elapsed))
        if problems:
            raise StageFailed(name, problems)
        say(f"   ok ({elapsed:.1f}s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--npm", required=True, help="folder with node_modules (crds.mjs dependencies)")
    parser.add_argument("--promtool", required=True)
    parser.add_argument("--out", required=True, help="folder for rendered output (inspect after a failure)")
    parser.add_argument("--write-k8s", action="store_true", help="regenerate k8s/ from the chart instead of checking it")
    parser.add_argument("--only", action="append", help="run only this stage (repeatable)")
    parser.add_argument("--no-fixtures", action="store_true", help="skip the broken-fixture proofs")
    args = parser.parse_args()
    tools = Tools(args)
    # Nothing here may reach a cluster: client-side only, whatever the user's kubeconfig says.
    os.environ["KUBECONFIG"] = str(tools.out / "no-cluster-kubeconfig")
    shutil.rmtree(tools.out, ignore_errors=True)
    (tools.out / "rendered").mkdir(parents=True)
    pipeline = Pipeline(tools, set(args.only) if args.only else None)
    started = time.monotonic()
    try:
        run_pipeline(pipeline, tools, args)
    except StageFailed as failure:
        print(f"\nvalidate-k8s: FAILED in stage '{failure.stage}' ({len(failure.problems)} problem(s)):", file=sys.stderr)
        for problem in failure.problems:
            print(f"  - {problem}", file=sys.stderr)
        print(f"validate-k8s: rendered output is in {tools.out}", file=sys.stderr)
        return 1
    say("stage times: " + ", ".join(f"{n} {t:.1f}s" for n, t in pipeline.timings))
    say(f"all checks passed in {time.monotonic() - started:.1f}s")
    return 0


def run_pipeline(p: Pipeline, tools: Tools, args: argparse.Namespace) -> None:
    sets = {name: load_values(path) for name, path in value_sets().items()}
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    say(f"value sets: {', '.join(f'ci/{n}-values.yaml' for n in sets)}; Kubernetes {' and '.join(KUBE_VERSIONS)}")

    if args.write_k8s:
        p.stage("k8s drift", "regenerating k8s/ from the chart", lambda: stage_drift(sets, write=True))
        return

    rendered: dict[str, dict[str, str]] = {}

    def do_render() -> list[str]:
        problems, out = stage_helm_render(sets)
        rendered.update(out)
        RENDER_CACHE.update(out)
        for name, files in out.items():
            (tools.out / "rendered" / f"{name}.yaml").write_text(as_stream(files))
        return problems

    p.stage("helm lint", "helm lint --strict of every value set (Kubernetes " + KUBE_VERSIONS[0] + ")", lambda: stage_helm_lint(sets))
    p.stage("helm render", "helm template of every value set, values.schema.json enforced", do_render)
    if not rendered:  # --only without render: nothing below has input
        rendered.update(stage_helm_render(sets)[1])
    p.stage("helm dry-run", "client-side dry-run install (Helm SDK, memory storage, no cluster)",
            lambda: stage_helm_dry_run(sets, rendered))

    helm_docs = {name: docs_of(files) for name, files in rendered.items()}
    groups = {name: rule_groups(docs) for name, docs in helm_docs.items()}
    # The slowest subprocess stages start now and run while the in-process stages work; their
    # stages below wait for the results (and report them in the usual order).
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    background = {
        "checkov": pool.submit(stage_checkov, tools, sorted((tools.out / "rendered").glob("*.yaml"))),
        "promtool test": pool.submit(lambda: [x for test in sorted((CHART / "tests").glob("*.test.yaml"))
                                              for x in stage_promtool_test(tools, groups.get("gke", []), test,
                                                                           tools.out / "promtool-test" / test.stem)]),
        "warehouse": pool.submit(stage_warehouse),
        "images": pool.submit(lambda: stage_images(chart_values) + stage_hadolint(tools, ROOT / "Dockerfile")
                              + stage_checkov(tools, [ROOT / "Dockerfile"], "dockerfile")),
    }
    pool.shutdown(wait=False)
    kustomized: dict[str, list[tuple[str, dict]]] = {}

    def do_kustomize() -> list[str]:
        problems, out = stage_kustomize(tools, [ROOT / d for d in KUSTOMIZE_DIRS])
        kustomized.update(out)
        return problems

    p.stage("kustomize", "kubectl kustomize " + ", ".join(KUSTOMIZE_DIRS), do_kustomize)
    everything = {**{f"helm {n}": d for n, d in helm_docs.items()}, **kustomized}
    all_docs = [doc for docs in everything.values() for doc in docs]
    p.stage("kubernetes-validate", f"core objects against the Kubernetes {' and '.join(KUBE_VERSIONS)} schemas (strict; no schema = failure)",
            lambda: stage_kubernetes_validate(all_docs))
    p.stage("custom resources", "Istio, prometheus-operator, Config Connector, Managed Prometheus, Secrets Store: schemas + tsc type-check",
            lambda: stage_custom_resources(tools, all_docs, "all"))

    rendered_files = sorted((tools.out / "rendered").glob("*.yaml"))
    p.stage("checkov", "checkov --framework kubernetes on every rendered set", lambda: background["checkov"].result())
    # k8s/**/*.generated.yaml and generated.yaml are PyYAML's dump of a render checked above (and
    # drift-checked below): linting them again would only cost time.
    hand_written_k8s = [f for f in sorted(ROOT.glob("k8s/**/*.yaml")) if not f.name.endswith("generated.yaml")]
    lint_files = (rendered_files + sorted(ROOT.glob("istio/*.yaml")) + hand_written_k8s
                  + sorted((CHART / "ci").glob("*.yaml")) + [CHART / "values.yaml", ROOT / "cloudbuild.yaml"]
                  + sorted((CHART / "tests").glob("*.yaml")) + [HERE / "fixtures.yaml", HERE / "checkov.yaml", HERE / "yamllint.yaml"])
    p.stage("yamllint", f"yamllint (duplicate keys, syntax, whitespace) on {len(lint_files)} files", lambda: stage_yamllint(tools, lint_files))
    p.stage("k8s drift", "k8s/ generated files equal a fresh render of the chart", lambda: stage_drift(sets, write=False))

    def promtool_check() -> list[str]:
        problems = [x for name, g in groups.items() if g for x in stage_promtool_check(tools, g, tools.out / "promtool" / name, name)]
        # The 99.99% SLO layer (charts/mirai/slo-99.99-values.yaml) over the gke set.
        layered = rule_groups(docs_of(render(deep_merge(sets["gke"], load_values(CHART / "slo-99.99-values.yaml")))))
        budgets = {r["expr"].split(">")[-1].strip() for g in layered for r in g["rules"] if r.get("alert") == "MiraiErrorBudgetBurnSlow"
                   and dig(r, "labels", "slo") == "availability"}
        if budgets != {"0.0001"}:
            problems.append(f"slo-99.99 layer: the slow-burn availability alerts use budgets {sorted(budgets)}, expected 0.0001")
        return problems + stage_promtool_check(tools, layered, tools.out / "promtool" / "slo-99.99", "slo-99.99")

    p.stage("promtool check", "promtool check rules on the rules of every value set and of the 99.99% SLO layer", promtool_check)
    p.stage("promtool test", "promtool test rules charts/mirai/tests/*.test.yaml (burn-rate windows, operational alerts)",
            lambda: background["promtool test"].result())
    p.stage("dashboards", "Grafana dashboard JSON: every expression parses (promtool) and names registered metrics",
            lambda: stage_dashboards(tools, groups["gke"], tools.out / "dashboards"))

    external = kustomized.get("istio", [])

    def semantic() -> list[str]:
        problems = []
        for name, docs in everything.items():
            objs = [d for _, d in docs]
            problems += [f"{name}: {m}" for m in k8s_checks.run_all(objs, NAMESPACE, [d for _, d in external])]
        return problems

    p.stage("semantic checks", f"{len(k8s_checks.CHECKS)} cross-object checks on {len(everything)} sets "
            f"({sum(len(d) for d in everything.values())} objects)", semantic)
    topology_rs = (ROOT / "services/platform/src/events/topology.rs").read_text()
    p.stage("pubsub topology", "values.yaml pubsub.topology and delivery equal services/platform/src/events/topology.rs",
            lambda: stage_topology(chart_values, topology_rs))
    p.stage("warehouse schemas", "charts/mirai/files/warehouse equal a fresh scripts/warehouse-schemas run and "
            "fit the event protos (Pub/Sub schema self-contained and wire-identical, BigQuery columns, modes, metadata)",
            lambda: background["warehouse"].result())
    p.stage("images", "Dockerfile (hadolint, checkov), targets = chart services = cloudbuild.yaml, .dockerignore keeps what builds need",
            lambda: background["images"].result())

    if not args.no_fixtures and not p.only or (p.only and "fixtures" in p.only):
        import fixtures

        p.only = None
        p.stage("fixtures", "deliberately broken inputs: each stage must catch its class of error",
                lambda: fixtures.run(tools, sets, rendered, helm_docs, external))


if __name__ == "__main__":
    sys.exit(main())
