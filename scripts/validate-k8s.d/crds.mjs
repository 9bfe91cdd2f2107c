// Validates custom resources offline, for scripts/validate-k8s (run by validate.py from the cached
// node_modules, never by hand):
//   1. schema: each object against its CRD's OpenAPI schema — @kubernetes-models/* for Istio,
//      prometheus-operator and Config Connector (types, enums, required fields), and our own JSON
//      schemas (schemas/*.json) for kinds no package models (Managed Prometheus, Secrets Store);
//   2. types: every @kubernetes-models object written out as a typed TypeScript constant and
//      compiled with tsc, whose excess-property checks catch misspelled fields, which the
//      schemas (open objects) let through.
//
//   node crds.mjs <objects.json> <schemas-dir> <work-dir>
// objects.json: [{"id": "...", "object": {...}}]. Prints JSON: [{"id", "check", "message"}].
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import Ajv from "ajv";

const [objectsPath, schemasDir, workDir] = process.argv.slice(2);
const objects = JSON.parse(readFileSync(objectsPath, "utf8"));
// crds.mjs runs from a copy inside the cached npm folder, so packages resolve from there.
const require = createRequire(import.meta.url);

// Where a group's models live; the module of a kind is <package>/<group>/<version>/<Kind>.
const PACKAGES = [
  [/^(networking|security|telemetry|extensions)\.istio\.io$/, "@kubernetes-models/istio"],
  [/^monitoring\.coreos\.com$/, "@kubernetes-models/prometheus-operator"],
  [/\.cnrm\.cloud\.google\.com$/, "@kubernetes-models/gke"],
];
// Kinds no package models: our own schemas.
const OWN_SCHEMAS = {
  "monitoring.googleapis.com/v1/PodMonitoring": "podmonitoring.json",
  "monitoring.googleapis.com/v1/Rules": "rules.json",
  "secrets-store.csi.x-k8s.io/v1/SecretProviderClass": "secretproviderclass.json",
};

const ajv = new Ajv({ allErrors: true, strict: false });
const ownValidators = {};
const problems = [];
const typed = [];

function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.split("/");
  const entry = PACKAGES.find(([pattern]) => pattern.test(group));
  return entry ? `${entry[1]}/${group}/${version}/${kind}` : null;
}

for (const { id, object } of objects) {
  const key = `${object.apiVersion}/${object.kind}`;
  if (OWN_SCHEMAS[key]) {
    ownValidators[key] ??= ajv.compile(
      JSON.parse(readFileSync(path.join(schemasDir, OWN_SCHEMAS[key]), "utf8")),
    );
    const validate = ownValidators[key];
    if (!validate(object)) {
      for (const error of validate.errors) {
        const where = error.instancePath || "/";
        const detail = error.params?.additionalProperty
          ? `${error.message} ('${error.params.additionalProperty}')`
          : error.params?.allowedValues
            ? `${error.message}: ${error.params.allowedValues.join(", ")}`
            : error.message;
        problems.push({ id, check: "schema", message: `${where}: ${detail}` });
      }
    }
    continue;
  }
  const spec = modulePath(object.apiVersion, object.kind);
  if (!spec) {
    problems.push({ id, check: "schema", message: `no schema for ${key}` });
    continue;
  }
  let model;
  try {
    model = (await import(import.meta.resolve(spec)))[object.kind];
  } catch {
    model = undefined;
  }
  if (!model) {
    problems.push({ id, check: "schema", message: `no model for ${key} (unknown or removed apiVersion)` });
    continue;
  }
  try {
    new model(object).validate();
  } catch (error) {
    for (const line of String(error.message).split("\n")) {
      if (line.trim()) problems.push({ id, check: "schema", message: line.trim() });
    }
  }
  typed.push({ id, spec, kind: object.kind, object });
}

// === TypeScript excess-property check =====================================================
if (typed.length > 0) {
  mkdirSync(workDir, { recursive: true });
  const lines = [];
  const ranges = [];
  typed.forEach(({ id, spec, kind, object }, index) => {
    lines.push(`import type { I${kind} as T${index} } from ${JSON.stringify(spec)};`);
    const body = JSON.stringify(object, null, 2).split("\n");
    const start = lines.length + 1;
    lines.push(`export const o${index}: T${index} = ${body[0]}`, ...body.slice(1));
    ranges.push({ id, start, end: lines.length });
  });
  const file = path.join(workDir, "objects.ts");
  writeFileSync(file, lines.join("\n") + "\n");
  const tsc = require.resolve("typescript/bin/tsc");
  const result = spawnSync(
    process.execPath,
    [tsc, "--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution",
      "nodenext", "--target", "es2022", "--pretty", "false", file],
    { cwd: workDir, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
  );
  const output = `${result.stdout}${result.stderr}`;
  let matched = 0;
  for (const line of output.split("\n")) {
    const found = /objects\.ts\((\d+),\d+\): error (TS\d+): (.*)$/.exec(line);
    if (!found) continue;
    matched += 1;
    const lineNo = Number(found[1]);
    const range = ranges.find((r) => lineNo >= r.start && lineNo <= r.end);
    const message = found[3].length > 400 ? `${found[3].slice(0, 400)}...` : found[3];
    problems.push({ id: range ? range.id : "(imports)", check: "types", message: `${found[2]}: ${message}` });
  }
  if (result.status !== 0 && matched === 0) {
    problems.push({ id: "(tsc)", check: "types", message: `tsc failed: ${output.slice(0, 2000)}` });
  }
}

process.stdout.write(JSON.stringify(problems));
