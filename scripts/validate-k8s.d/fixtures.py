"""Deliberately broken inputs (fixtures.yaml), run through the pipeline's own stage functions.

A fixture starts from real input — a rendered value set, the chart's values, a file of
fixtures/ — breaks one thing, and names the stage that must catch it and a piece of the message
it must print. A fixture that passes its stage, or fails it for another reason, fails the run:
that stage no longer catches its class of error.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

import k8s_checks
import validate as v

HERE = Path(__file__).resolve().parent


def _split(path: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def _parent(obj: Any, path: str) -> tuple[Any, Any]:
    keys = _split(path)
    for key in keys[:-1]:
        obj = obj[key]
    return obj, keys[-1]


def mutate(docs: list[tuple[str, dict]], steps: list[dict]) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """Applies the steps to a deep copy; returns (all documents, the ones touched)."""
    out = copy.deepcopy(docs)
    touched: dict[int, tuple[str, dict]] = {}
    for step in steps:
        select = step["select"]
        matches = [i for i, (_, d) in enumerate(out)
                   if d.get("kind") == select["kind"] and d["metadata"]["name"] == select["name"]]
        if not matches:
            raise ValueError(f"selects nothing: {select}")
        for i in matches:
            doc = out[i][1]
            op = step["op"]
            if op == "remove-document":
                out[i] = (out[i][0], {})
                continue
            if op == "env":  # set one variable of a container (env is a list of {name, value})
                container = doc
                for key in _split(step["path"]):
                    container = container[key]
                entry = next(e for e in container["env"] if e["name"] == step["name"])
                entry.clear()
                entry.update({"name": step["name"], "value": step["value"]})
                touched[i] = out[i]
                continue
            parent, key = _parent(doc, step["path"])
            if op == "set":
                parent[key] = copy.deepcopy(step["value"])
            elif op == "delete":
                del parent[key]
            elif op == "rename":
                parent[step["to"]] = parent.pop(key)
            else:
                raise ValueError(f"unknown op {op}")
            touched[i] = out[i]
    kept = [(s, d) for s, d in out if d]
    return kept, list(touched.values())


def run(tools: v.Tools, sets: dict[str, dict], rendered: dict[str, dict[str, str]],
        helm_docs: dict[str, list[tuple[str, dict]]], external: list[tuple[str, dict]]) -> list[str]:
    fixtures = yaml.safe_load((HERE / "fixtures.yaml").read_text())
    problems = []
    work = tools.out / "fixtures"
    work.mkdir(parents=True, exist_ok=True)
    # Custom-resource fixtures share one node/tsc run (each costs seconds on its own).
    batched: dict[str, list[str]] = {}
    batch = [f for f in fixtures if f["stage"] == "custom resources"]
    if batch:
        docs = []
        for f in batch:
            _, touched = mutate(helm_docs[f.get("set", "gke")], f["mutate"])
            docs += [(f"<{f['name']}> {s}", d) for s, d in touched]
        for problem in v.stage_custom_resources(tools, docs, "fixtures"):
            name = problem[1:problem.index(">")]
            batched.setdefault(name, []).append(problem)
    for fixture in fixtures:
        try:
            started = time.monotonic()
            if fixture["stage"] == "custom resources":
                found = batched.get(fixture["name"], [])
            else:
                found = run_one(fixture, tools, sets, helm_docs, external, work / fixture["name"])
            elapsed = time.monotonic() - started
        except Exception as error:  # a fixture that cannot even be set up is broken itself
            problems.append(f"{fixture['name']}: could not run: {type(error).__name__}: {error}")
            continue
        caught = [p for p in found if fixture["expect"] in p]
        if caught:
            v.say(f"   caught by {fixture['stage']}: {fixture['name']} ({elapsed:.1f}s)")
            v.say(f"      {' '.join(caught[0].split())[:220]}")
        elif found:
            problems.append(f"{fixture['name']}: stage {fixture['stage']} failed, but not with {fixture['expect']!r}: {found[:3]}")
        else:
            problems.append(f"{fixture['name']}: stage {fixture['stage']} did NOT catch it (expected {fixture['expect']!r})")
    v.say(f"   {len(fixtures) - len(problems)} of {len(fixtures)} fixtures caught")
    return problems


def run_one(fixture: dict, tools: v.Tools, sets: dict[str, dict], helm_docs: dict[str, list[tuple[str, dict]]],
            external: list[tuple[str, dict]], work: Path) -> list[str]:
    stage = fixture["stage"]
    base = fixture.get("set", "gke")
    work.mkdir(parents=True, exist_ok=True)
    if "mutate" in fixture:
        docs, touched = mutate(helm_docs[base], fixture["mutate"])
    else:
        docs, touched = helm_docs[base], []
    if stage == "helm render":
        values = v.deep_merge(sets[base], fixture["values"])
        return v.stage_helm_render({base: values})[0]
    if stage == "kubernetes-validate":
        return v.stage_kubernetes_validate(touched)
    if stage == "custom resources":
        return v.stage_custom_resources(tools, touched, "fixture")
    if stage == "semantic checks":
        return k8s_checks.run_all([d for _, d in docs], v.NAMESPACE, [d for _, d in external])
    if stage == "checkov":
        target = work / "manifest.yaml"
        target.write_text(yaml.safe_dump_all([d for _, d in touched], sort_keys=False))
        return v.stage_checkov(tools, [target])
    if stage == "yamllint":
        return v.stage_yamllint(tools, [HERE / fixture["file"]])
    if stage == "hadolint":
        return v.stage_hadolint(tools, HERE / fixture["file"])
    if stage == "kustomize":
        return v.stage_kustomize(tools, [HERE / fixture["dir"]])[0]
    if stage == "promtool test":
        groups = v.rule_groups(docs)
        return v.stage_promtool_test(tools, groups, HERE / fixture["file"], work)
    if stage == "promtool check":
        groups = copy.deepcopy(v.rule_groups(helm_docs[base]))
        groups[0]["rules"][0]["expr"] = fixture["expr"]
        return v.stage_promtool_check(tools, groups, work, "fixture")
    if stage == "dashboards":
        dashboards = work / "dashboards"
        dashboards.mkdir(exist_ok=True)
        shutil.copy(HERE / fixture["file"], dashboards / Path(fixture["file"]).name)
        return v.stage_dashboards(tools, v.rule_groups(helm_docs[base]), work, dashboards)
    if stage == "k8s drift":
        path = fixture["path"]
        original = (v.ROOT / path).read_text()
        edited = original.replace(fixture["replace"][0], fixture["replace"][1], 1)
        if edited == original:
            raise ValueError(f"{fixture['replace'][0]!r} is not in {path}")
        return v.stage_drift(sets, write=False, read=lambda p: edited if p == path else (v.ROOT / p).read_text(), only=[path])
    if stage == "pubsub topology":
        values = yaml.safe_load((v.CHART / "values.yaml").read_text())
        source = (v.ROOT / "services/platform/src/events/topology.rs").read_text()
        if "drop_subscription" in fixture:
            subs = values["pubsub"]["topology"]["subscriptions"]
            values["pubsub"]["topology"]["subscriptions"] = [s for s in subs if s["name"] != fixture["drop_subscription"]]
        if "source_replace" in fixture:
            old, new = fixture["source_replace"]
            if old not in source:
                raise ValueError(f"{old!r} is not in topology.rs")
            source = source.replace(old, new, 1)
        return v.stage_topology(values, source)
    if stage == "warehouse schemas":
        return v.stage_warehouse(fixture["edit"], work)
    if stage == "images":
        return v.stage_images(yaml.safe_load((v.CHART / "values.yaml").read_text()), dockerignore=fixture.get("dockerignore"))
    raise ValueError(f"unknown stage {stage!r}")
