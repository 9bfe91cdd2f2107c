"""Offline evaluation of Istio AuthorizationPolicy and RequestAuthentication against requests.

`decide` follows Istio's documented semantics for the fields this chart uses (and refuses the
others rather than guess): RequestAuthentication rejects a bearer token no rule accepts (401);
then any matching DENY policy denies; a workload with no ALLOW policy allows; otherwise a
matching ALLOW rule is needed. Within a rule, `from`, `to` and `when` must all match; a list of
sources or operations matches when one does; values match exactly, by prefix ("abc*"), by
suffix ("*abc"), or "*" for any non-empty value (an absent header is empty, so
`notValues: ["*"]` means "no such header").

k8s_checks.py builds the request tables (the REST API from docs/openapi.json at the ingress, each
internal caller per service) and compares `decide` with the expected answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


class Unsupported(Exception):
    """A policy uses a field this evaluator does not model: the check reports it instead of
    guessing what Istio would do."""


@dataclass
class Workload:
    """The pod a request reaches: its namespace and labels."""

    namespace: str
    labels: dict[str, str]


@dataclass
class Request:
    host: str
    port: int
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    # The caller's mesh identity (mTLS), e.g. cluster.local/ns/mirai/sa/mirai-user; None in plaintext.
    principal: str | None = None
    # The claims of the bearer token in `Authorization`, when the request carries a well-signed one.
    jwt: dict[str, Any] | None = None

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), "")


def value_matches(pattern: str, value: str | None) -> bool:
    value = value or ""
    if "{" in pattern:
        raise Unsupported(f"path template {pattern!r}")
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _field(spec: Obj, name: str, value: str | None) -> bool:
    """`name` (any pattern matches) and `notName` (no pattern matches) of a source/operation."""
    yes, no = spec.get(name), spec.get("not" + name[0].upper() + name[1:])
    if yes is not None and not any(value_matches(str(p), value) for p in yes):
        return False
    if no is not None and any(value_matches(str(p), value) for p in no):
        return False
    return True


_SOURCE = {"principals", "requestPrincipals", "namespaces"}
_OPERATION = {"hosts", "ports", "methods", "paths"}


def _check_fields(spec: Obj, known: set[str], where: str) -> None:
    for key in spec:
        base = key[3].lower() + key[4:] if key.startswith("not") else key
        if base not in known:
            raise Unsupported(f"{where} field {key!r}")


def _principal_namespace(principal: str | None) -> str | None:
    parts = (principal or "").split("/")
    return parts[2] if len(parts) >= 5 and parts[1] == "ns" else None


def _source_matches(source: Obj, req: Request, request_principal: str | None) -> bool:
    _check_fields(source, _SOURCE, "source")
    return (_field(source, "principals", req.principal)
            and _field(source, "requestPrincipals", request_principal)
            and _field(source, "namespaces", _principal_namespace(req.principal)))


def _operation_matches(op: Obj, req: Request) -> bool:
    _check_fields(op, _OPERATION, "operation")
    return (_field(op, "hosts", req.host)
            and _field(op, "ports", str(req.port))
            and _field(op, "methods", req.method)
            and _field(op, "paths", req.path.split("?", 1)[0]))


def _condition_matches(cond: Obj, req: Request, request_principal: str | None) -> bool:
    key = cond["key"]
    if key.startswith("request.headers[") and key.endswith("]"):
        value = req.header(key[len("request.headers["):-1])
    elif key == "request.auth.principal":
        value = request_principal
    elif key == "source.principal":
        value = req.principal
    elif key == "destination.port":
        value = str(req.port)
    else:
        raise Unsupported(f"condition key {key!r}")
    return _field(cond, "values", value)


def rule_matches(rule: Obj, req: Request, request_principal: str | None) -> bool:
    unknown = set(rule) - {"from", "to", "when"}
    if unknown:
        raise Unsupported(f"rule field(s) {sorted(unknown)}")
    if "from" in rule and not any(_source_matches(f.get("source") or {}, req, request_principal) for f in rule["from"]):
        return False
    if "to" in rule and not any(_operation_matches(t.get("operation") or {}, req) for t in rule["to"]):
        return False
    return all(_condition_matches(c, req, request_principal) for c in rule.get("when") or [])


def _applies(policy: Obj, workload: Workload, root_namespace: str) -> bool:
    meta, spec = policy.get("metadata", {}), policy.get("spec") or {}
    if "targetRef" in spec or "targetRefs" in spec:
        raise Unsupported(f"{policy['kind']}/{meta.get('name')}: targetRef")
    namespace = meta.get("namespace")
    if namespace not in (workload.namespace, root_namespace):
        return False
    wanted = (spec.get("selector") or {}).get("matchLabels") or {}
    return all(workload.labels.get(k) == v for k, v in wanted.items())


def decide(policies: list[Obj], workload: Workload, req: Request, root_namespace: str = "istio-system") -> str:
    """"allow", "deny" (403 by an AuthorizationPolicy) or "unauthenticated" (401: a bearer token
    no RequestAuthentication rule accepts)."""
    request_principal = None
    bearer = req.header("authorization").startswith("Bearer ")
    authns = [p for p in policies if p.get("kind") == "RequestAuthentication" and _applies(p, workload, root_namespace)]
    rules = [r for p in authns for r in (p.get("spec") or {}).get("jwtRules") or []]
    if bearer and rules:
        claims = req.jwt or {}
        audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        accepted = [r for r in rules if r.get("issuer") == claims.get("iss")
                    and (not r.get("audiences") or set(r["audiences"]) & set(audiences))]
        if not accepted:
            return "unauthenticated"
        request_principal = f"{claims['iss']}/{claims.get('sub')}"
    authz = [p for p in policies if p.get("kind") == "AuthorizationPolicy" and _applies(p, workload, root_namespace)]
    actions = {(p.get("spec") or {}).get("action", "ALLOW") for p in authz}
    if actions - {"ALLOW", "DENY"}:
        raise Unsupported(f"action(s) {sorted(actions - {'ALLOW', 'DENY'})}")
    for p in authz:
        if (p.get("spec") or {}).get("action") == "DENY":
            if any(rule_matches(r, req, request_principal) for r in (p["spec"].get("rules") or [])):
                return "deny"
    allows = [p for p in authz if (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"]
    if not allows:
        return "allow"
    for p in allows:
        if any(rule_matches(r, req, request_principal) for r in (p.get("spec") or {}).get("rules") or []):
            return "allow"
    return "deny"
