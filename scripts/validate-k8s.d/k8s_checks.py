"""Semantic checks of rendered manifests: what schemas cannot see because it spans objects.

Nothing offline runs admission, CRD CEL rules or `istioctl analyze`; these checks cover the
cross-object rules this platform depends on. Each check takes the documents of one rendered set
(plus `external`: objects applied separately, such as istio/) and returns messages of the form
"Kind/name: what is wrong". An empty list means the set passed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import authz

Obj = dict[str, Any]

# === Helpers ======================================================================================


def ident(doc: Obj) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def ns_of(doc: Obj, default: str) -> str:
    return doc.get("metadata", {}).get("namespace") or default


def dig(obj: Any, *path: Any, default: Any = None) -> Any:
    for key in path:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and key < len(obj):
            obj = obj[key]
        else:
            return default
        if obj is None:
            return default
    return obj


def selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels/matchExpressions) or a plain label map against labels.
    An empty selector matches everything, as in Kubernetes."""
    if selector is None:
        return True
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(k) == v for k, v in selector.items())
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


_CPU = re.compile(r"^([0-9.]+)(m?)$")
_MEM = re.compile(r"^([0-9.]+)([KMGTE]i?|k)?$")
_MEM_UNITS = {None: 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "E": 1e18,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Ei": 2**60}


def cpu_cores(value: Any) -> float:
    match = _CPU.match(str(value))
    if not match:
        raise ValueError(f"not a CPU quantity: {value!r}")
    return float(match.group(1)) / (1000 if match.group(2) else 1)


def mem_bytes(value: Any) -> float:
    match = _MEM.match(str(value))
    if not match:
        raise ValueError(f"not a memory quantity: {value!r}")
    return float(match.group(1)) * _MEM_UNITS[match.group(2)]


@dataclass
class PodTemplate:
    """The pod of a workload (Deployment, Job, ...)."""

    doc: Obj
    namespace: str
    labels: dict[str, str]
    spec: Obj

    @property
    def name(self) -> str:
        return ident(self.doc)

    def containers(self, init: bool = True) -> list[Obj]:
        out = list(self.spec.get("containers") or [])
        if init:
            out = list(self.spec.get("initContainers") or []) + out
        return out

    def sidecars(self) -> list[Obj]:
        return [c for c in self.spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]

    def ports(self) -> dict[str, int]:
        """Every named container port (main and sidecar containers) → its number."""
        out = {}
        for c in self.containers():
            for p in c.get("ports") or []:
                if "name" in p:
                    out[p["name"]] = p["containerPort"]
        return out

    def port_numbers(self) -> set[int]:
        return {p["containerPort"] for c in self.containers() for p in c.get("ports") or []}

    def resolve(self, port: Any) -> int | None:
        if isinstance(port, int):
            return port if port in self.port_numbers() else None
        return self.ports().get(str(port))


def pod_templates(docs: Iterable[Obj], namespace: str) -> list[PodTemplate]:
    out = []
    for doc in docs:
        kind = doc.get("kind")
        template = None
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            template = dig(doc, "spec", "template")
        elif kind == "CronJob":
            template = dig(doc, "spec", "jobTemplate", "spec", "template")
        elif kind == "Pod":
            template = doc
        if template is not None:
            out.append(PodTemplate(doc, ns_of(doc, namespace),
                                   dict(dig(template, "metadata", "labels") or {}),
                                   template.get("spec") or {}))
    return out


@dataclass
class Context:
    docs: list[Obj]
    namespace: str
    external: list[Obj] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pods = pod_templates(self.docs, self.namespace)
        self.services = [d for d in self.docs if d.get("kind") == "Service"]

    def of(self, kind: str, include_external: bool = False) -> list[Obj]:
        pool = self.docs + (self.external if include_external else [])
        return [d for d in pool if d.get("kind") == kind]

    def pods_of(self, selector: Obj | None, namespace: str, services_only: bool = False) -> list[PodTemplate]:
        return [p for p in self.pods
                if p.namespace == namespace and selector_matches(selector, p.labels)
                and (not services_only or p.doc.get("kind") != "Job")]

    def service_by_host(self, host: str) -> Obj | None:
        """A Service by short name, <name>.<ns>, or <name>.<ns>.svc.cluster.local."""
        parts = host.split(".")
        name = parts[0]
        namespace = parts[1] if len(parts) > 1 and parts[1] != "svc" else self.namespace
        for svc in self.services:
            if svc["metadata"]["name"] == name and ns_of(svc, self.namespace) == namespace:
                if len(parts) <= 2 or ".".join(parts[2:]) in ("svc", "svc.cluster.local"):
                    return svc
        return None


CHECKS: list[tuple[str, Callable[[Context], list[str]]]] = []


def check(title: str):
    def register(fn: Callable[[Context], list[str]]) -> Callable[[Context], list[str]]:
        CHECKS.append((title, fn))
        return fn
    return register


def run_all(docs: list[Obj], namespace: str, external: list[Obj] | None = None) -> list[str]:
    ctx = Context(docs, namespace, external or [])
    problems = []
    for title, fn in CHECKS:
        problems += [f"[{title}] {m}" for m in fn(ctx)]
    return problems


# === Object identity, selectors =================================================================


@check("unique names")
def unique_names(ctx: Context) -> list[str]:
    seen, out = set(), []
    for d in ctx.docs:
        key = (d.get("apiVersion", "").split("/")[0], d.get("kind"), ns_of(d, ctx.namespace), dig(d, "metadata", "name"))
        if key in seen:
            out.append(f"{ident(d)}: defined twice in namespace {key[2]}")
        seen.add(key)
    return out


@check("workload selectors")
def workload_selectors(ctx: Context) -> list[str]:
    out = []
    for p in ctx.pods:
        selector = dig(p.doc, "spec", "selector")
        if p.doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            if not selector or not selector_matches(selector, p.labels):
                out.append(f"{p.name}: spec.selector {selector} does not match its pod template labels {p.labels}")
    return out


@check("services")
def services(ctx: Context) -> list[str]:
    out = []
    for svc in ctx.services:
        selector = dig(svc, "spec", "selector")
        if not selector:
            continue
        pods = ctx.pods_of(selector, ns_of(svc, ctx.namespace))
        if not pods:
            out.append(f"{ident(svc)}: selector {selector} selects no pods")
            continue
        for p in pods:
            if p.doc.get("kind") in ("Job", "CronJob"):
                out.append(f"{ident(svc)}: selects the pods of {p.name} (a Job would receive traffic)")
                continue
            for port in dig(svc, "spec", "ports", default=[]):
                target = port.get("targetPort", port.get("port"))
                if p.resolve(target) is None:
                    out.append(f"{ident(svc)}: port {port.get('name')} targets {target!r}, which {p.name} does not declare")
    return out


# === Containers ===================================================================================


def _probe_port(probe: Obj) -> Any:
    for kind in ("httpGet", "tcpSocket", "grpc"):
        if kind in probe:
            return probe[kind].get("port")
    return None


@check("probes")
def probes(ctx: Context) -> list[str]:
    out = []
    for p in ctx.pods:
        long_running = p.doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet")
        checked = (p.spec.get("containers") or []) if long_running else []
        for c in checked + p.sidecars():
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe not in c:
                    out.append(f"{p.name}: container {c['name']} has no {probe}")
        for c in p.containers():
            own = {x.get("name"): x["containerPort"] for x in c.get("ports") or []}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe not in c:
                    continue
                port = _probe_port(c[probe])
                if port is None:
                    if "exec" not in c[probe]:
                        out.append(f"{p.name}: {c['name']}.{probe} has no handler")
                elif isinstance(port, str) and port not in own:
                    out.append(f"{p.name}: {c['name']}.{probe} uses port {port!r}, which the container does not declare")
                elif isinstance(port, int) and port not in own.values():
                    out.append(f"{p.name}: {c['name']}.{probe} uses port {port}, which the container does not declare")
    return out


@check("image tags")
def image_tags(ctx: Context) -> list[str]:
    out = []
    for p in ctx.pods:
        for c in p.containers():
            image = c.get("image", "")
            if "@sha256:" in image:
                continue
            last = image.rsplit("/", 1)[-1]
            if ":" not in last:
                out.append(f"{p.name}: container {c['name']} image {image!r} has no tag")
            elif last.rsplit(":", 1)[1] == "latest":
                out.append(f"{p.name}: container {c['name']} image {image!r} uses the latest tag")
    return out


@check("resources")
def resources(ctx: Context) -> list[str]:
    out = []
    for p in ctx.pods:
        for c in p.containers():
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(kind) or {}):
                        out.append(f"{p.name}: container {c['name']} has no {kind}.{r}")
            try:
                for r, parse in (("cpu", cpu_cores), ("memory", mem_bytes)):
                    req, lim = dig(res, "requests", r), dig(res, "limits", r)
                    if req is not None and lim is not None and parse(req) > parse(lim):
                        out.append(f"{p.name}: container {c['name']} requests more {r} ({req}) than its limit ({lim})")
            except ValueError as error:
                out.append(f"{p.name}: container {c['name']}: {error}")
    return out


@check("GKE Autopilot")
def autopilot(ctx: Context) -> list[str]:
    """Autopilot (general-purpose class) rejects or rewrites pods below 50m CPU / 52 MiB, or with
    a memory:CPU ratio outside 1..6.5 GiB per vCPU. Init containers that are not sidecars run
    alone, so the pod needs the larger of them and the running set."""
    out = []
    for p in ctx.pods:
        try:
            running = p.spec.get("containers", []) + p.sidecars()
            cpu = sum(cpu_cores(dig(c, "resources", "requests", "cpu", default=0)) for c in running)
            mem = sum(mem_bytes(dig(c, "resources", "requests", "memory", default=0)) for c in running)
            for c in p.spec.get("initContainers") or []:
                if c.get("restartPolicy") != "Always":
                    cpu = max(cpu, cpu_cores(dig(c, "resources", "requests", "cpu", default=0)))
                    mem = max(mem, mem_bytes(dig(c, "resources", "requests", "memory", default=0)))
        except ValueError as error:
            out.append(f"{p.name}: {error}")
            continue
        if cpu < 0.05 or mem < 52 * 2**20:
            out.append(f"{p.name}: pod requests {cpu * 1000:.0f}m CPU / {mem / 2**20:.0f} MiB, below Autopilot's 50m / 52 MiB")
            continue
        ratio = mem / 2**30 / cpu
        if not 1.0 <= ratio <= 6.5:
            out.append(f"{p.name}: pod memory:CPU ratio is {ratio:.2f} GiB per vCPU; Autopilot needs 1 to 6.5")
    return out


_ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


@check("Pod Security restricted")
def pod_security(ctx: Context) -> list[str]:
    out = []
    for p in ctx.pods:
        pod_sc = p.spec.get("securityContext") or {}
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if p.spec.get(key):
                out.append(f"{p.name}: {key} is not allowed")
        for v in p.spec.get("volumes") or []:
            kinds = set(v) - {"name"}
            if not kinds <= _ALLOWED_VOLUMES:
                out.append(f"{p.name}: volume {v['name']} of type {sorted(kinds - _ALLOWED_VOLUMES)} is not allowed")
        for c in p.containers():
            sc = c.get("securityContext") or {}
            name = f"{p.name}: container {c['name']}"
            if sc.get("privileged"):
                out.append(f"{name} is privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{name} must set allowPrivilegeEscalation: false")
            if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
                out.append(f"{name} must run as non-root (runAsNonRoot: true)")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                out.append(f"{name} runs as uid 0")
            drop = dig(sc, "capabilities", "drop", default=[])
            if "ALL" not in drop:
                out.append(f"{name} must drop ALL capabilities")
            added = set(dig(sc, "capabilities", "add", default=[])) - {"NET_BIND_SERVICE"}
            if added:
                out.append(f"{name} adds capabilities {sorted(added)}")
            seccomp = dig(sc, "seccompProfile", "type") or dig(pod_sc, "seccompProfile", "type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                out.append(f"{name} needs seccompProfile RuntimeDefault (has {seccomp})")
            if not sc.get("readOnlyRootFilesystem"):
                out.append(f"{name} must use a read-only root filesystem")
            for port in c.get("ports") or []:
                if port.get("hostPort"):
                    out.append(f"{name} uses hostPort {port['hostPort']}")
    return out


@check("environment")
def environment(ctx: Context) -> list[str]:
    out = []
    for p in ctx.pods:
        for c in p.containers():
            names = [e["name"] for e in c.get("env") or []]
            for dup in sorted({n for n in names if names.count(n) > 1}):
                out.append(f"{p.name}: container {c['name']} sets {dup} more than once")
    return out


@check("client IP behind proxies")
def client_ip_hops(ctx: Context) -> list[str]:
    """The REST gateway (the pods a VirtualService binds to an ingress Gateway, or any pod that
    sets MIRAI_TRUSTED_PROXY_HOPS) states how many proxies append to X-Forwarded-For. With the
    mesh exactly one does, the Istio ingress gateway (sidecars append nothing): any other value
    makes every client one address (0) or lets clients pick theirs (2+)."""
    out = []
    for p in ctx.pods:
        for c in p.containers(init=False):
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            if "MIRAI_JWT_AUDIENCE" not in env or "MIRAI_UPSTREAM_TIMEOUT" not in env:
                continue  # not the REST gateway
            hops = env.get("MIRAI_TRUSTED_PROXY_HOPS")
            mesh = p.labels.get("sidecar.istio.io/inject") == "true"
            if hops is None:
                out.append(f"{p.name}: container {c['name']} does not set MIRAI_TRUSTED_PROXY_HOPS "
                           "(the proxies in front of it; without it every client is the last proxy's address)")
            elif mesh and hops != "1":
                out.append(f"{p.name}: MIRAI_TRUSTED_PROXY_HOPS={hops} with the mesh: the Istio ingress gateway is "
                           "the one proxy that appends to X-Forwarded-For, so it must be 1")
    return out


# === Traffic: Services, NetworkPolicies, callers ==================================================


def _np_port_allows(rule_ports: list[Obj] | None, dst: PodTemplate, port: int) -> bool:
    if not rule_ports:
        return True
    for rp in rule_ports:
        value = rp.get("port")
        if value is None:
            return True
        number = dst.resolve(value) if isinstance(value, str) else value
        end = rp.get("endPort", number)
        if number is not None and number <= port <= end:
            return True
    return False


def _peer_matches(peer: Obj, pod: PodTemplate, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        return False
    ns_sel = peer.get("namespaceSelector")
    if ns_sel is not None:
        if not selector_matches(ns_sel, {"kubernetes.io/metadata.name": pod.namespace}):
            return False
    elif pod.namespace != policy_ns:
        return False
    return selector_matches(peer.get("podSelector"), pod.labels)


def _policies_for(ctx: Context, pod: PodTemplate, direction: str) -> list[Obj]:
    return [np for np in ctx.of("NetworkPolicy")
            if ns_of(np, ctx.namespace) == pod.namespace
            and selector_matches(dig(np, "spec", "podSelector") or {}, pod.labels)
            and direction in (dig(np, "spec", "policyTypes") or ["Ingress"])]


def np_allows(ctx: Context, src: PodTemplate, dst: PodTemplate, port: int) -> tuple[bool, bool]:
    """(egress from src allowed, ingress to dst allowed) for a TCP connection to dst:port."""
    egress_policies = _policies_for(ctx, src, "Egress")
    egress = not egress_policies or any(
        _np_port_allows(rule.get("ports"), dst, port)
        and (not rule.get("to") or any(_peer_matches(peer, dst, ns_of(np, ctx.namespace)) for peer in rule["to"]))
        for np in egress_policies for rule in dig(np, "spec", "egress", default=[]))
    ingress_policies = _policies_for(ctx, dst, "Ingress")
    ingress = not ingress_policies or any(
        _np_port_allows(rule.get("ports"), dst, port)
        and (not rule.get("from") or any(_peer_matches(peer, src, ns_of(np, ctx.namespace)) for peer in rule["from"]))
        for np in ingress_policies for rule in dig(np, "spec", "ingress", default=[]))
    return egress, ingress


@check("network policies")
def network_policies(ctx: Context) -> list[str]:
    nps = ctx.of("NetworkPolicy")
    if not nps:
        return []
    out = []
    for p in ctx.pods:
        selecting = _policies_for(ctx, p, "Ingress") + _policies_for(ctx, p, "Egress")
        if not selecting:
            out.append(f"{p.name}: no NetworkPolicy selects its pods")
            continue
        for direction in ("Ingress", "Egress"):
            deny = [np for np in _policies_for(ctx, p, direction)
                    if not dig(np, "spec", direction.lower())]
            if not deny:
                out.append(f"{p.name}: no default-deny {direction} NetworkPolicy covers its pods")
        if p.doc.get("kind") == "Job":
            continue
        own = [np for np in selecting if dig(np, "spec", "podSelector", "matchLabels")
               and set(dig(np, "spec", "podSelector", "matchLabels")) > {"app.kubernetes.io/instance"}]
        if not own:
            out.append(f"{p.name}: only the namespace-wide default deny selects it (no policy of its own)")
        # Every port a Service sends to must be admitted by some ingress rule.
        for svc in ctx.services:
            if ns_of(svc, ctx.namespace) != p.namespace or not selector_matches(dig(svc, "spec", "selector"), p.labels):
                continue
            for sp in dig(svc, "spec", "ports", default=[]):
                number = p.resolve(sp.get("targetPort", sp.get("port")))
                if number is None:
                    continue
                admitted = any(_np_port_allows(rule.get("ports"), p, number)
                               for np in _policies_for(ctx, p, "Ingress") for rule in dig(np, "spec", "ingress", default=[]))
                if not admitted:
                    out.append(f"{p.name}: no NetworkPolicy admits traffic to its port {number} ({ident(svc)} port {sp.get('name')})")
    return out


_URL = re.compile(r"^https?://([^:/]+):(\d+)")
_DNS_TARGET = re.compile(r"^dns:///?([^:/]+):(\d+)$")


def upstream_targets(value: str) -> list[tuple[str, str, int]] | None:
    """The endpoints of a client target (MIRAI_<UP>_URL): (scheme, host, port) for one
    `http://host:port`, a comma-separated list of them, or `dns:///host:port` (scheme "dns").
    None when the value is none of these (not an upstream of this release)."""
    found = _DNS_TARGET.match(value.strip())
    if found:
        return [("dns", found.group(1), int(found.group(2)))]
    out = []
    for part in value.split(","):
        found = _URL.match(part.strip())
        if not found:
            return None
        out.append((part.strip().split(":", 1)[0], found.group(1), int(found.group(2))))
    return out or None


def _upstream_envs(ctx: Context) -> Iterable[tuple[PodTemplate, str, str, list[tuple[str, str, int]]]]:
    """(caller, variable, value, targets) for every MIRAI_*_URL of a long-running container."""
    for p in ctx.pods:
        if p.doc.get("kind") == "Job":
            continue
        for c in p.spec.get("containers") or []:
            for env in c.get("env") or []:
                if not re.match(r"^MIRAI_[A-Z_]+_URL$", env["name"]) or "value" not in env:
                    continue
                targets = upstream_targets(env["value"])
                if targets:
                    yield p, env["name"], env["value"], targets


def _headless(svc: Obj) -> bool:
    return dig(svc, "spec", "clusterIP") == "None"


@check("callers reach their upstreams")
def upstream_urls(ctx: Context) -> list[str]:
    """Every MIRAI_*_URL names a Service port of this set, and NetworkPolicies let the caller
    reach the pods behind it (egress at the caller, ingress at the callee)."""
    out = []
    for p, name, value, targets in _upstream_envs(ctx):
        for _, host, port in targets:
            svc = ctx.service_by_host(host)
            if svc is None:
                out.append(f"{p.name}: {name}={value} names no Service of this release")
                continue
            sp = next((x for x in dig(svc, "spec", "ports", default=[]) if x["port"] == port), None)
            if sp is None:
                out.append(f"{p.name}: {name}={value}: {ident(svc)} has no port {port}")
                continue
            for dst in ctx.pods_of(dig(svc, "spec", "selector"), ns_of(svc, ctx.namespace), services_only=True):
                number = dst.resolve(sp.get("targetPort", sp["port"]))
                if number is None:
                    continue
                egress, ingress = np_allows(ctx, p, dst, number)
                if not egress:
                    out.append(f"{p.name}: NetworkPolicy blocks its egress to {dst.name} port {number} ({name})")
                if not ingress:
                    out.append(f"{dst.name}: NetworkPolicy blocks ingress from {p.name} on port {number} ({name})")
    return out


@check("upstream URLs follow the mesh")
def upstream_urls_mesh(ctx: Context) -> list[str]:
    """A caller with a sidecar (sidecar.istio.io/inject: "true") names its upstream's ClusterIP
    Service with http://: the sidecar balances per request. A caller without one names the
    upstream's headless Service with dns:///: its own client balances over the pods (through a
    ClusterIP, one long-lived HTTP/2 connection would pin every call to one pod)."""
    out = []
    for p, name, value, targets in _upstream_envs(ctx):
        mesh = p.labels.get("sidecar.istio.io/inject") == "true"
        for scheme, host, _ in targets:
            svc = ctx.service_by_host(host)
            if svc is None:
                continue  # reported by "callers reach their upstreams"
            if mesh and (scheme == "dns" or _headless(svc)):
                out.append(f"{p.name}: {name}={value}: a caller with the mesh must name the ClusterIP Service with http:// "
                           f"(its sidecar balances per request), not {'a headless Service' if _headless(svc) else 'dns:///'}")
            elif not mesh and not (scheme == "dns" and _headless(svc)):
                out.append(f"{p.name}: {name}={value}: a caller without the mesh must name a headless Service with dns:/// "
                           f"(through {ident(svc)} one HTTP/2 connection pins every call to one pod)"
                           if not _headless(svc) else
                           f"{p.name}: {name}={value}: a headless Service needs dns:/// (http:// resolves one address once)")
    return out


# === Availability: PDB, HPA, shutdown =============================================================


@check("disruption budgets")
def disruption_budgets(ctx: Context) -> list[str]:
    out = []
    hpas = {dig(h, "spec", "scaleTargetRef", "name"): h for h in ctx.of("HorizontalPodAutoscaler")}
    for p in ctx.pods:
        if p.doc.get("kind") != "Deployment":
            continue
        name = p.doc["metadata"]["name"]
        replicas = dig(p.doc, "spec", "replicas", default=1)
        if name in hpas:
            replicas = dig(hpas[name], "spec", "minReplicas", default=1)
        if replicas <= 1:
            continue
        if not any(selector_matches(dig(pdb, "spec", "selector"), p.labels) for pdb in ctx.of("PodDisruptionBudget")):
            out.append(f"{p.name}: runs {replicas} replicas but no PodDisruptionBudget selects its pods")
    for pdb in ctx.of("PodDisruptionBudget"):
        if not ctx.pods_of(dig(pdb, "spec", "selector"), ns_of(pdb, ctx.namespace)):
            out.append(f"{ident(pdb)}: selects no pods")
    return out


@check("autoscalers")
def autoscalers(ctx: Context) -> list[str]:
    out = []
    deployments = {d["metadata"]["name"]: d for d in ctx.of("Deployment")}
    for hpa in ctx.of("HorizontalPodAutoscaler"):
        target = dig(hpa, "spec", "scaleTargetRef", "name")
        if target not in deployments:
            out.append(f"{ident(hpa)}: scales Deployment {target}, which does not exist")
        elif "replicas" in deployments[target]["spec"]:
            out.append(f"{ident(hpa)}: Deployment {target} sets spec.replicas, which every apply would reset")
        if dig(hpa, "spec", "minReplicas", default=1) > dig(hpa, "spec", "maxReplicas"):
            out.append(f"{ident(hpa)}: minReplicas above maxReplicas")
    return out


def _seconds(value: str) -> float:
    match = re.match(r"^(\d+)(ms|s|m|h)$", value or "")
    if not match:
        return 0.0
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


@check("graceful shutdown")
def graceful_shutdown(ctx: Context) -> list[str]:
    out = []
    for p in ctx.pods:
        if p.doc.get("kind") != "Deployment":
            continue
        grace = p.spec.get("terminationGracePeriodSeconds", 30)
        for c in p.spec.get("containers") or []:
            sleep = dig(c, "lifecycle", "preStop", "sleep", "seconds", default=0)
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            needed = sleep + _seconds(env.get("MIRAI_SHUTDOWN_DRAIN_DELAY", "0s")) + _seconds(env.get("MIRAI_SHUTDOWN_GRACE", "20s"))
            if grace <= needed:
                out.append(f"{p.name}: terminationGracePeriodSeconds {grace} must exceed preStop {sleep}s + drain + grace = {needed:.0f}s")
    return out


# === Identity, secrets, hooks =====================================================================


@check("service accounts")
def service_accounts(ctx: Context) -> list[str]:
    out = []
    accounts = {(ns_of(sa, ctx.namespace), sa["metadata"]["name"]): sa for sa in ctx.of("ServiceAccount")}
    workload_identity = any(dig(sa, "metadata", "annotations", "iam.gke.io/gcp-service-account") for sa in accounts.values())
    for p in ctx.pods:
        name = p.spec.get("serviceAccountName", "default")
        sa = accounts.get((p.namespace, name))
        if sa is None:
            out.append(f"{p.name}: serviceAccountName {name} is not part of the release")
            continue
        hook = dig(p.doc, "metadata", "annotations", "helm.sh/hook")
        if workload_identity and hook != "test" and not dig(sa, "metadata", "annotations", "iam.gke.io/gcp-service-account"):
            # (`helm test` Pods call the release, nothing of Google's)
            out.append(f"{p.name}: ServiceAccount {name} lacks the Workload Identity annotation")
        if hook:
            sa_hook = dig(sa, "metadata", "annotations", "helm.sh/hook")
            if not sa_hook or not set(hook.split(",")) <= set(sa_hook.split(",")):
                out.append(f"{p.name}: hook ({hook}) runs as {name}, which does not exist yet at that hook")
            elif int(dig(sa, "metadata", "annotations", "helm.sh/hook-weight", default="0")) >= int(dig(p.doc, "metadata", "annotations", "helm.sh/hook-weight", default="0")):
                out.append(f"{p.name}: its ServiceAccount hook must have a lower helm.sh/hook-weight")
    return out


@check("secret volumes")
def secret_volumes(ctx: Context) -> list[str]:
    out = []
    classes = {(ns_of(d, ctx.namespace), d["metadata"]["name"]) for d in ctx.of("SecretProviderClass")}
    for p in ctx.pods:
        for v in p.spec.get("volumes") or []:
            cls = dig(v, "csi", "volumeAttributes", "secretProviderClass")
            if cls and (p.namespace, cls) not in classes:
                out.append(f"{p.name}: volume {v['name']} uses SecretProviderClass {cls}, which the release does not define")
    return out


# === Istio ========================================================================================


def _fqdn(host: str, namespace: str) -> str:
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.svc.cluster.local"
    if len(parts) == 2:
        return f"{host}.svc.cluster.local"
    return host


@check("Istio routes")
def istio_routes(ctx: Context) -> list[str]:
    out = []
    rules = {}
    for dr in ctx.of("DestinationRule"):
        rules[_fqdn(dig(dr, "spec", "host"), ns_of(dr, ctx.namespace))] = dr
    entries = {h for se in ctx.of("ServiceEntry", True) for h in dig(se, "spec", "hosts", default=[])}
    gateways = {f"{ns_of(g, ctx.namespace)}/{g['metadata']['name']}": g for g in ctx.of("Gateway", True)}
    for vs in ctx.of("VirtualService"):
        vs_ns = ns_of(vs, ctx.namespace)
        for gw in dig(vs, "spec", "gateways", default=[]):
            if gw == "mesh":
                continue
            ref = gw if "/" in gw else f"{vs_ns}/{gw}"
            if ref not in gateways:
                out.append(f"{ident(vs)}: gateway {ref} is not defined (in the release or istio/)")
                continue
            served = {h.split("/")[-1] for s in dig(gateways[ref], "spec", "servers", default=[]) for h in s.get("hosts", [])}
            for host in [h for h in dig(vs, "spec", "hosts", default=[]) if ctx.service_by_host(h) is None]:
                if "." in host and not host.endswith(".svc.cluster.local") and host not in served and "*" not in served:
                    out.append(f"{ident(vs)}: host {host} is not served by gateway {ref} (hosts {sorted(served)})")
        for route in dig(vs, "spec", "http", default=[]):
            dests = route.get("route") or []
            weights = [d.get("weight") for d in dests]
            if len(dests) > 1 or any(w is not None for w in weights):
                total = sum(w or 0 for w in weights)
                if total != 100:
                    out.append(f"{ident(vs)}: route {route.get('name')} weights sum to {total}, not 100")
            for d in dests:
                host = _fqdn(dig(d, "destination", "host"), vs_ns)
                svc = ctx.service_by_host(host)
                if svc is None and host not in entries:
                    out.append(f"{ident(vs)}: route {route.get('name')} sends to {host}, which is no Service or ServiceEntry")
                    continue
                port = dig(d, "destination", "port", "number")
                if svc is not None and port is not None and port not in [x["port"] for x in svc["spec"].get("ports", [])]:
                    out.append(f"{ident(vs)}: route {route.get('name')} sends to port {port}, which {ident(svc)} does not expose")
                subset = dig(d, "destination", "subset")
                if subset:
                    dr = rules.get(host)
                    names = [s["name"] for s in dig(dr, "spec", "subsets", default=[])] if dr else []
                    if subset not in names:
                        out.append(f"{ident(vs)}: route {route.get('name')} uses subset {subset!r} of {host}, which no DestinationRule defines")
    for host, dr in rules.items():
        svc = ctx.service_by_host(host)
        if svc is None:
            if host not in entries:
                out.append(f"{ident(dr)}: host {host} is no Service or ServiceEntry")
            continue
        pods = ctx.pods_of(dig(svc, "spec", "selector"), ns_of(svc, ctx.namespace), services_only=True)
        for subset in dig(dr, "spec", "subsets", default=[]):
            if not any(selector_matches(subset.get("labels"), {**p.labels}) for p in pods):
                out.append(f"{ident(dr)}: subset {subset['name']} ({subset.get('labels')}) matches none of {host}'s pods")
    return out


# Envoy retry conditions under which the request never reached the upstream process.
_NOT_DELIVERED = {"connect-failure", "refused-stream", "reset-before-request"}


@check("one retrying layer")
def one_retrying_layer(ctx: Context) -> list[str]:
    """The callers' gRPC clients retry (idempotent RPCs, on UNAVAILABLE, under a budget), so a
    VirtualService route to a gRPC port retries nothing; a route to an HTTP port (the gateway,
    which retries its own upstream calls) retries only requests that never reached a process.
    Every route says so explicitly: without `retries`, Istio's default policy retries twice on
    connect-failure, refused-stream, unavailable, cancelled and 503."""
    out = []
    for vs in ctx.of("VirtualService"):
        vs_ns = ns_of(vs, ctx.namespace)
        for route in dig(vs, "spec", "http", default=[]):
            name = f"{ident(vs)}: route {route.get('name')}"
            retries = route.get("retries")
            if retries is None:
                out.append(f"{name} sets no retries, so Istio's default policy retries (2 attempts); set attempts: 0 or a policy")
                continue
            if not retries.get("attempts"):
                continue
            for d in route.get("route") or []:
                svc = ctx.service_by_host(_fqdn(dig(d, "destination", "host"), vs_ns))
                port = dig(d, "destination", "port", "number")
                sp = next((x for x in dig(svc, "spec", "ports", default=[]) if x["port"] == port), None) if svc else None
                if sp is None:
                    continue  # reported by "Istio routes"
                if sp.get("appProtocol") == "grpc" or str(sp.get("name", "")).startswith("grpc"):
                    out.append(f"{name} retries calls to gRPC port {port} of {ident(svc)}, which its callers' clients "
                               f"already retry: one retrying layer per call path (attempts must be 0)")
                    continue
                unsafe = sorted(set(filter(None, str(retries.get("retryOn", "")).split(","))) - _NOT_DELIVERED)
                if not retries.get("retryOn") or unsafe:
                    out.append(f"{name} retries requests that reached {ident(svc)} ({', '.join(unsafe) or 'Istio default conditions'}): "
                               f"only {', '.join(sorted(_NOT_DELIVERED))} keep it one retrying layer")
    return out


@check("Istio security")
def istio_security(ctx: Context) -> list[str]:
    out = []
    accounts = {sa["metadata"]["name"] for sa in ctx.of("ServiceAccount")}
    for policy in ctx.of("AuthorizationPolicy") + ctx.of("PeerAuthentication") + ctx.of("RequestAuthentication"):
        policy_ns = ns_of(policy, ctx.namespace)
        if policy_ns != ctx.namespace:
            continue  # e.g. the ingress gateway's namespace: its pods are not part of the release
        selector = dig(policy, "spec", "selector", "matchLabels")
        pods = ctx.pods_of({"matchLabels": selector} if selector else None, policy_ns, services_only=True)
        if selector and not pods:
            out.append(f"{ident(policy)}: selector {selector} matches no pods")
            continue
        numbers = set().union(*(p.port_numbers() for p in pods)) if pods else set()
        if policy["kind"] == "AuthorizationPolicy":
            for rule in dig(policy, "spec", "rules", default=[]):
                for source in rule.get("from") or []:
                    for principal in dig(source, "source", "principals", default=[]):
                        match = re.match(r"^cluster\.local/ns/([^/]+)/sa/([^/]+)$", principal)
                        if match and match.group(1) == ctx.namespace and match.group(2) not in accounts:
                            out.append(f"{ident(policy)}: principal {principal} is no ServiceAccount of the release")
                for op in rule.get("to") or []:
                    for port in dig(op, "operation", "ports", default=[]):
                        if int(port) not in numbers:
                            out.append(f"{ident(policy)}: port {port} is not a port of the selected pods")
        if policy["kind"] == "PeerAuthentication":
            for port in (dig(policy, "spec", "portLevelMtls") or {}):
                if int(port) not in numbers:
                    out.append(f"{ident(policy)}: portLevelMtls port {port} is not a port of the selected pods")
    issuers = {e.get("value") for p in ctx.pods for c in p.spec.get("containers") or []
               for e in c.get("env") or [] if e["name"] == "MIRAI_JWT_ISSUER"}
    for ra in ctx.of("RequestAuthentication"):
        if not issuers:
            out.append(f"{ident(ra)}: no service sets MIRAI_JWT_ISSUER, so tokens carry the default issuer")
        for rule in dig(ra, "spec", "jwtRules", default=[]):
            found = _URL.match(rule.get("jwksUri", ""))
            if not found or ctx.service_by_host(found.group(1)) is None:
                out.append(f"{ident(ra)}: jwksUri {rule.get('jwksUri')} names no Service of the release")
            if issuers and rule.get("issuer") not in issuers:
                out.append(f"{ident(ra)}: issuer {rule.get('issuer')} differs from the services' MIRAI_JWT_ISSUER {sorted(issuers)}")
    return out


# === Monitoring ===================================================================================


@check("monitoring")
def monitoring(ctx: Context) -> list[str]:
    out = []
    for pm in ctx.of("PodMonitoring"):
        pods = ctx.pods_of(dig(pm, "spec", "selector"), ns_of(pm, ctx.namespace), services_only=True)
        if not pods:
            out.append(f"{ident(pm)}: selects no pods")
        for ep in dig(pm, "spec", "endpoints", default=[]):
            for p in pods:
                if p.resolve(ep.get("port")) is None:
                    out.append(f"{ident(pm)}: port {ep.get('port')!r} is not a port of {p.name}")
    for sm in ctx.of("ServiceMonitor"):
        svcs = [s for s in ctx.services if selector_matches(dig(sm, "spec", "selector"), dig(s, "metadata", "labels") or {})]
        if not svcs:
            out.append(f"{ident(sm)}: selects no Services")
        for ep in dig(sm, "spec", "endpoints", default=[]):
            for s in svcs:
                if ep.get("port") not in [x.get("name") for x in s["spec"].get("ports", [])]:
                    out.append(f"{ident(sm)}: port {ep.get('port')!r} is not a port of {ident(s)}")
    for rules in ctx.of("Rules") + ctx.of("PrometheusRule"):
        for group in dig(rules, "spec", "groups", default=[]):
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    if not dig(rule, "labels", "severity"):
                        out.append(f"{ident(rules)}: alert {rule['alert']} in {group['name']} has no severity label")
                    if not dig(rule, "annotations", "summary"):
                        out.append(f"{ident(rules)}: alert {rule['alert']} in {group['name']} has no summary")
    # Every severity the alerts use has its own route (else it falls to the default receiver).
    severities = {dig(rule, "labels", "severity") for rules in ctx.of("Rules") + ctx.of("PrometheusRule")
                  for group in dig(rules, "spec", "groups", default=[]) for rule in group.get("rules") or []
                  if "alert" in rule}
    for amc in ctx.of("AlertmanagerConfig"):
        receivers = {r["name"] for r in dig(amc, "spec", "receivers", default=[])}
        routed = {}
        for route in dig(amc, "spec", "route", "routes", default=[]):
            for m in route.get("matchers") or []:
                if m.get("name") == "severity" and m.get("matchType", "=") == "=":
                    routed[m.get("value")] = route.get("receiver")
        for severity in sorted(s for s in severities if s):
            if severity not in routed:
                out.append(f"{ident(amc)}: no route for severity={severity} (it would go to the default receiver)")
        for receiver in [dig(amc, "spec", "route", "receiver")] + list(routed.values()):
            if receiver not in receivers:
                out.append(f"{ident(amc)}: route to receiver {receiver!r}, which is not defined")
    return out


# === Authorization: the request tables ===========================================================

# The ingress gateway's service account, as istio/README installs it (Istio's gateway chart
# names it after the release).
INGRESS_SERVICE_ACCOUNT = "istio-ingressgateway"
OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
# Served besides the documented API (gateway/src/routes/mod.rs UNDOCUMENTED), anonymously.
UNDOCUMENTED = [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/index.html")]


def _principal(namespace: str, account: str) -> str:
    return f"cluster.local/ns/{namespace}/sa/{account}"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "sample", path)


def api_operations(openapi: Obj) -> list[tuple[str, str, bool]]:
    """(method, concrete path, anonymous allowed) of every operation of the REST API: an
    operation without `security` is public (the router's own table, docs/openapi.json)."""
    out = []
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                public = not op.get("security")
                out.append((method.upper(), _concrete(path), public))
                if method == "get":
                    out.append(("HEAD", _concrete(path), public))
    return out + [(m, p, True) for m, p in UNDOCUMENTED]


def ingress_table(host: str, issuer: str, audience: str, openapi: Obj) -> list[tuple[str, authz.Request, str]]:
    """(what, request at the ingress, expected decision)."""
    token = {"iss": issuer, "aud": audience, "sub": "user-1"}
    bearer = {"authorization": "Bearer eyJ.token"}
    private = [(m, p) for m, p, public in api_operations(openapi) if not public and m != "HEAD"]
    out: list[tuple[str, authz.Request, str]] = []
    for method, path, public in api_operations(openapi):
        out.append((f"anonymous {method} {path} ({'public' if public else 'private'})",
                    authz.Request(host, 443, method, path), "allow" if public else "deny"))
    for method, path in private:
        out.append((f"preflight for {method} {path}", authz.Request(host, 443, "OPTIONS", path, {
            "origin": "https://app.example.com", "access-control-request-method": method}), "allow"))
        out.append((f"X-API-Key {method} {path}", authz.Request(host, 443, method, path, {"x-api-key": "mk_key"}), "allow"))
        out.append((f"Authorization: ApiKey {method} {path}",
                    authz.Request(host, 443, method, path, {"authorization": "ApiKey mk_key"}), "allow"))
        out.append((f"bearer {method} {path}", authz.Request(host, 443, method, path, bearer, jwt=token), "allow"))
    out.append(("bearer from another issuer", authz.Request(host, 443, "GET", "/v1/me", bearer,
                                                            jwt={**token, "iss": "https://evil.example"}), "unauthenticated"))
    out.append(("anonymous request to a path outside the API", authz.Request(host, 443, "GET", "/admin"), "deny"))
    return out


@check("authorization request table")
def authorization_table(ctx: Context) -> list[str]:
    """Evaluates the rendered AuthorizationPolicies and RequestAuthentications (authz.py) against
    a table of requests: at the ingress every operation of docs/openapi.json anonymously (allowed
    exactly when it has no `security`), with a CORS preflight, an API key in either header and a
    valid bearer token (all allowed), a token of another issuer (401); then the hop to the REST
    gateway; inside the mesh, each release workload called by each other one on its main port
    (allowed exactly for its callers: the services naming it in an upstream URL, and the ingress
    gateway for the REST gateway), in plaintext (denied), and metrics scrapes on the admin port."""
    policies = ctx.of("AuthorizationPolicy") + ctx.of("RequestAuthentication")
    if not policies:
        return []  # no mesh in this set
    out = []
    openapi = json.loads(OPENAPI.read_text())
    meshed = [p for p in ctx.pods if p.doc.get("kind") != "Job" and p.labels.get("sidecar.istio.io/inject") == "true"]

    def run(table: list[tuple[str, authz.Request, str]], workload: authz.Workload, where: str) -> None:
        wrong = []
        for what, req, expected in table:
            try:
                got = authz.decide(policies, workload, req)
            except authz.Unsupported as error:
                out.append(f"{where}: cannot evaluate ({error})")
                return
            if got != expected:
                wrong.append(f"{where}: {what}: {got}, expected {expected}")
        out.extend(wrong[:6])
        if len(wrong) > 6:
            out.append(f"{where}: ... and {len(wrong) - 6} more requests decided wrongly")

    gateways = {f"{ns_of(g, ctx.namespace)}/{g['metadata']['name']}": g for g in ctx.of("Gateway", include_external=True)}
    for vs in ctx.of("VirtualService"):
        for gw_name in [g for g in dig(vs, "spec", "gateways", default=[]) if g != "mesh"]:
            gw = gateways.get(gw_name if "/" in gw_name else f"{ns_of(vs, ctx.namespace)}/{gw_name}")
            if gw is None:
                out.append(f"{ident(vs)}: Gateway {gw_name} is not among the objects (istio/)")
                continue
            ingress = authz.Workload(ns_of(gw, ctx.namespace), dig(gw, "spec", "selector", default={}))
            dests = [dig(r, "destination", "host") for h in dig(vs, "spec", "http", default=[]) for r in h.get("route") or []]
            svc = next((ctx.service_by_host(h) for h in dests if h and ctx.service_by_host(h)), None)
            backend = [p for p in meshed if svc and selector_matches(dig(svc, "spec", "selector"), p.labels)]
            env = {e["name"]: e.get("value") for p in backend for c in p.spec.get("containers") or [] for e in c.get("env") or []}
            for host in [h for h in dig(vs, "spec", "hosts", default=[]) if ctx.service_by_host(h) is None]:
                table = ingress_table(host, env.get("MIRAI_JWT_ISSUER", ""), env.get("MIRAI_JWT_AUDIENCE", ""), openapi)
                run(table, ingress, f"ingress {gw_name} ({host})")
                for p in backend:
                    port = p.spec["containers"][0]["ports"][0]["containerPort"]
                    hop = [(f"{what} from the ingress gateway",
                            authz.Request(f"{svc['metadata']['name']}.{ctx.namespace}.svc.cluster.local", port, req.method, req.path,
                                          req.headers, _principal(ingress.namespace, INGRESS_SERVICE_ACCOUNT), req.jwt), "allow")
                           for what, req, expected in table if expected == "allow"]
                    run(hop, authz.Workload(p.namespace, p.labels), p.name)

    callers: dict[str, set[str]] = {}
    for caller, _, _, targets in _upstream_envs(ctx):
        for _, host, _ in targets:
            svc = ctx.service_by_host(host)
            for p in ctx.pods:
                if svc and selector_matches(dig(svc, "spec", "selector"), p.labels):
                    callers.setdefault(p.name, set()).add(caller.name)
    for p in meshed:
        if p.name not in callers and not any(authz._applies(x, authz.Workload(p.namespace, p.labels), "istio-system")
                                             for x in ctx.of("AuthorizationPolicy")):
            continue
        main = p.spec["containers"][0]["ports"][0]["containerPort"]
        admin = p.ports().get("http-admin")
        host = f"{p.name}.{p.namespace}.svc.cluster.local"
        table = []
        for q in meshed:
            if q.name == p.name or q.doc.get("kind") != "Deployment":
                continue
            principal = _principal(q.namespace, q.spec.get("serviceAccountName", "default"))
            table.append((f"{q.name} calls it", authz.Request(host, main, "POST", "/grpc.health.v1.Health/Check", {}, principal),
                          "allow" if q.name in callers.get(p.name, set()) else "deny"))
        table.append(("a workload of another namespace calls it",
                      authz.Request(host, main, "POST", "/grpc.health.v1.Health/Check", {}, _principal("other", "default")), "deny"))
        table.append(("a plaintext call", authz.Request(host, main, "POST", "/grpc.health.v1.Health/Check"), "deny"))
        if admin:
            table.append(("a metrics scrape", authz.Request(host, admin, "GET", "/metrics"), "allow"))
            table.append(("a POST to the admin port", authz.Request(host, admin, "POST", "/metrics"), "deny"))
        run(table, authz.Workload(p.namespace, p.labels), p.name)
    return out


@check("helm test Pods reach their targets")
def helm_tests(ctx: Context) -> list[str]:
    """A `helm test` Pod (outside the mesh) that calls a Service of the release (its URL or BASE
    variable) is admitted by the NetworkPolicies both ways and, in plaintext, by the target's
    AuthorizationPolicies; one that goes through the ingress gateway (CURL_ARGS --connect-to)
    may leave towards it."""
    out = []
    policies = ctx.of("AuthorizationPolicy")
    for p in ctx.pods:
        if dig(p.doc, "metadata", "annotations", "helm.sh/hook") != "test":
            continue
        env = {e["name"]: e.get("value", "") for c in p.containers() for e in c.get("env") or []}
        url = env.get("URL") or env.get("BASE") or ""
        via = re.search(r"--connect-to \S+:(\S+):(\d+)", env.get("CURL_ARGS", ""))
        if via:
            ingress = [PodTemplate(g, ns_of(g, ctx.namespace), dig(g, "spec", "selector", default={}), {})
                       for g in ctx.of("Gateway", include_external=True)]
            egress = _policies_for(ctx, p, "Egress")
            for gw in ingress:
                if egress and not any(_peer_matches(peer, gw, ns_of(np, ctx.namespace))
                                      for np in egress for rule in dig(np, "spec", "egress", default=[])
                                      for peer in rule.get("to") or []):
                    out.append(f"{p.name}: no NetworkPolicy lets it reach the ingress gateway "
                               f"({gw.namespace}, {gw.labels}) behind {via.group(1)}")
            continue
        found = re.match(r"^http://([^:/]+):(\d+)(/[^?]*)?", url)
        if not found:
            out.append(f"{p.name}: calls {url!r}, neither a Service of the release nor through the ingress gateway")
            continue
        svc = ctx.service_by_host(found.group(1))
        if svc is None:
            out.append(f"{p.name}: {found.group(1)} is not a Service of the release")
            continue
        service_port = int(found.group(2))
        sp = next((x for x in dig(svc, "spec", "ports", default=[]) if x.get("port") == service_port), None)
        if sp is None:
            out.append(f"{p.name}: {ident(svc)} has no port {service_port}")
            continue
        for dst in ctx.pods_of(dig(svc, "spec", "selector"), p.namespace, services_only=True):
            number = dst.resolve(sp.get("targetPort", sp.get("port")))
            egress, ingress = np_allows(ctx, p, dst, number)
            if not (egress and ingress):
                out.append(f"{p.name}: NetworkPolicy {'egress' if not egress else 'ingress'} refuses it → {dst.name}:{number}")
            path = found.group(3) or "/"
            verdict = authz.decide(policies, authz.Workload(dst.namespace, dst.labels),
                                   authz.Request(found.group(1), number, "GET", path))
            if policies and verdict != "allow":
                out.append(f"{p.name}: the mesh refuses its plaintext GET {path} on {dst.name}:{number} ({verdict})")
    return out


# === Config Connector: the event warehouse =======================================================

PUBSUB_AGENT = re.compile(r"^serviceAccount:service-\d+@gcp-sa-pubsub\.iam\.gserviceaccount\.com$")
WRITE_METADATA_COLUMNS = {"subscription_name": {"STRING"}, "message_id": {"STRING"},
                          "publish_time": {"TIMESTAMP"}, "attributes": {"JSON", "STRING"}}


@check("event warehouse")
def event_warehouse(ctx: Context) -> list[str]:
    """What Config Connector cannot tell before it applies: the references between the warehouse's
    objects resolve, each BigQuery subscription can write its table (schema source, metadata
    columns, the Pub/Sub service agent's access), and nothing else gains BigQuery access."""
    out: list[str] = []
    kcc = [d for d in ctx.docs if ".cnrm.cloud.google.com/" in d.get("apiVersion", "")]
    by_kind: dict[str, dict[str, Obj]] = {}
    for d in kcc:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    subs = [s for s in by_kind.get("PubSubSubscription", {}).values() if dig(s, "spec", "bigqueryConfig")]
    if not subs:
        return out

    def ref(owner: Obj, kind: str, r: Obj | None, what: str) -> Obj | None:
        if not r or r.get("external"):
            return None
        target = by_kind.get(kind, {}).get(r.get("name"))
        if target is None:
            out.append(f"{ident(owner)}: {what} names {kind}/{r.get('name')}, which the release does not create")
        return target

    grants = [m for m in by_kind.get("IAMPolicyMember", {}).values()]

    def agent_has(role: str, kind: str, name: str) -> bool:
        return any(PUBSUB_AGENT.match(str(dig(m, "spec", "member", default=""))) and dig(m, "spec", "role") == role
                   and dig(m, "spec", "resourceRef", "kind") == kind and dig(m, "spec", "resourceRef", "name") == name
                   for m in grants)

    for t in by_kind.get("BigQueryTable", {}).values():
        ref(t, "BigQueryDataset", dig(t, "spec", "datasetRef"), "datasetRef")
    for t in by_kind.get("PubSubTopic", {}).values():
        if dig(t, "spec", "schemaSettings"):
            ref(t, "PubSubSchema", dig(t, "spec", "schemaSettings", "schemaRef"), "schemaSettings.schemaRef")
            if dig(t, "spec", "schemaSettings", "encoding") != "BINARY":
                out.append(f"{ident(t)}: schemaSettings.encoding must be BINARY (the outbox relay publishes binary protobuf)")
    for s in subs:
        config = dig(s, "spec", "bigqueryConfig")
        topic = ref(s, "PubSubTopic", dig(s, "spec", "topicRef"), "topicRef")
        table = ref(s, "BigQueryTable", config.get("tableRef"), "bigqueryConfig.tableRef")
        if table is None:
            continue
        try:
            columns = {c["name"]: c for c in json.loads(dig(table, "spec", "schema", default="[]"))}
        except (ValueError, KeyError, TypeError) as error:
            out.append(f"{ident(table)}: spec.schema is not a BigQuery schema: {error}")
            continue
        if config.get("useTopicSchema"):
            if topic is not None and not dig(topic, "spec", "schemaSettings"):
                out.append(f"{ident(s)}: useTopicSchema, but {ident(topic)} has no schema (Pub/Sub refuses the subscription)")
        elif "data" not in columns:
            out.append(f"{ident(s)}: without a topic schema Pub/Sub writes the payload to a data column, {ident(table)} has none")
        if config.get("writeMetadata"):
            for name, types in WRITE_METADATA_COLUMNS.items():
                if columns.get(name, {}).get("type") not in types:
                    out.append(f"{ident(s)}: writeMetadata, but {ident(table)} has no {name} column of type {'/'.join(sorted(types))}")
        else:
            out.append(f"{ident(s)}: writeMetadata is off: the CloudEvents attributes (ce-id, ce-time, ce-subject) would be lost")
        part = dig(table, "spec", "timePartitioning", "field")
        if part and columns.get(part, {}).get("type") not in ("TIMESTAMP", "DATE"):
            out.append(f"{ident(table)}: partitioned on {part}, which is no TIMESTAMP/DATE column")
        for col in dig(table, "spec", "clustering", default=[]) or []:
            if col not in columns or columns[col].get("mode") == "REPEATED" or columns[col].get("type") == "RECORD":
                out.append(f"{ident(table)}: clustered on {col}, which is no top-level scalar column")
        dataset = dig(table, "spec", "datasetRef", "name")
        if dataset and not agent_has("roles/bigquery.dataEditor", "BigQueryDataset", dataset):
            out.append(f"{ident(s)}: the Pub/Sub service agent has no roles/bigquery.dataEditor on BigQueryDataset/{dataset}: "
                       "it cannot write the rows")
        # The dead-letter topic's references and the service agent's grants: "dead-letter grants".
        if not dig(s, "spec", "deadLetterPolicy", "deadLetterTopicRef"):
            out.append(f"{ident(s)}: no dead-letter topic: rows BigQuery refuses would be dropped after the retention")
    # Least privilege: BigQuery roles go to the Pub/Sub service agent on the dataset, to nobody else.
    for m in grants:
        role = str(dig(m, "spec", "role", default=""))
        if role.startswith("roles/bigquery.") and not PUBSUB_AGENT.match(str(dig(m, "spec", "member", default=""))):
            out.append(f"{ident(m)}: grants {role} to {dig(m, 'spec', 'member') or dig(m, 'spec', 'memberFrom')}; "
                       "the warehouse's only writer is the Pub/Sub service agent")
    return out


# === Config Connector: dead-lettering ============================================================


@check("dead-letter grants")
def dead_letter_grants(ctx: Context) -> list[str]:
    """Every subscription with a dead-letter policy (the services' and the warehouse's) can really
    dead-letter: Pub/Sub forwards as its service agent, which needs roles/pubsub.publisher on the
    dead-letter topic and roles/pubsub.subscriber on the subscription it forwards from. Without
    them the policy is accepted and silently inert. Grants are per topic and per subscription,
    never on the project, and all name one service agent (one project number)."""
    out: list[str] = []
    kcc = [d for d in ctx.docs if ".cnrm.cloud.google.com/" in d.get("apiVersion", "")]
    topics = {d["metadata"]["name"] for d in kcc if d.get("kind") == "PubSubTopic"}
    grants = [d for d in kcc if d.get("kind") == "IAMPolicyMember"]
    agent_grants = [m for m in grants if PUBSUB_AGENT.match(str(dig(m, "spec", "member", default="")))]

    def agent_has(role: str, kind: str, name: str) -> bool:
        return any(dig(m, "spec", "role") == role and dig(m, "spec", "resourceRef", "kind") == kind
                   and dig(m, "spec", "resourceRef", "name") == name for m in agent_grants)

    for s in (d for d in kcc if d.get("kind") == "PubSubSubscription"):
        dlq = dig(s, "spec", "deadLetterPolicy", "deadLetterTopicRef")
        if not dlq:
            continue
        if dlq.get("external"):
            out.append(f"{ident(s)}: its dead-letter topic is external ({dlq['external']}): the release cannot "
                       "grant the Pub/Sub service agent on it; create the topic in the release")
            continue
        name = dlq.get("name")
        if name not in topics:
            out.append(f"{ident(s)}: deadLetterPolicy.deadLetterTopicRef names PubSubTopic/{name}, which the release does not create")
        if not agent_has("roles/pubsub.publisher", "PubSubTopic", name):
            out.append(f"{ident(s)}: the Pub/Sub service agent cannot publish to its dead-letter topic {name} "
                       "(no roles/pubsub.publisher on it): failed messages would never be forwarded")
        if not agent_has("roles/pubsub.subscriber", "PubSubSubscription", s["metadata"]["name"]):
            out.append(f"{ident(s)}: the Pub/Sub service agent cannot forward from it (no roles/pubsub.subscriber on it): "
                       "failed messages would never be forwarded")
    for m in agent_grants:
        if dig(m, "spec", "resourceRef", "kind") == "Project":
            out.append(f"{ident(m)}: grants the Pub/Sub service agent {dig(m, 'spec', 'role')} on the whole project; "
                       "grant it per dead-letter topic and per subscription")
    members = sorted({str(dig(m, "spec", "member")) for m in agent_grants})
    if len(members) > 1:
        out.append(f"Pub/Sub service agent grants name {len(members)} agents ({', '.join(members)}): one project, one agent")
    return out


# === Config Connector: the models bucket =========================================================

MODEL_READERS = {"prediction"}  # app.kubernetes.io/name of the workloads that read the models


@check("models bucket")
def models_bucket(ctx: Context) -> list[str]:
    """Cloud Storage grants (models.gcs, templates/gcp-iam.yaml) stay least privilege: read-only
    (roles/storage.objectViewer), on a bucket (never the project), and only to the Google
    service account that a model-reading workload runs as through Workload Identity."""
    out: list[str] = []
    accounts = {sa["metadata"]["name"]: sa for sa in ctx.of("ServiceAccount")}
    readers = set()
    for p in ctx.pods:
        if p.labels.get("app.kubernetes.io/name") in MODEL_READERS:
            sa = accounts.get(p.spec.get("serviceAccountName", "default"))
            gsa = dig(sa, "metadata", "annotations", "iam.gke.io/gcp-service-account", default="") if sa else ""
            if gsa:
                readers.add(gsa.split("@", 1)[0])
    for m in ctx.of("IAMPolicyMember"):
        role = str(dig(m, "spec", "role", default=""))
        if not role.startswith("roles/storage."):
            continue
        kind = dig(m, "spec", "resourceRef", "kind")
        if kind != "StorageBucket":
            out.append(f"{ident(m)}: grants {role} on {kind} {dig(m, 'spec', 'resourceRef', 'external') or ''}".rstrip()
                       + "; Cloud Storage roles go on the models bucket only")
        if role != "roles/storage.objectViewer":
            out.append(f"{ident(m)}: grants {role}; the services only read the models (roles/storage.objectViewer)")
        member = dig(m, "spec", "memberFrom", "serviceAccountRef", "name") or \
            str(dig(m, "spec", "member", default="")).removeprefix("serviceAccount:").split("@", 1)[0]
        if member not in readers:
            out.append(f"{ident(m)}: grants {role} to {member}, which no model-reading workload "
                       f"({', '.join(sorted(MODEL_READERS))}) runs as; readers here: {', '.join(sorted(readers)) or 'none'}")
    return out
