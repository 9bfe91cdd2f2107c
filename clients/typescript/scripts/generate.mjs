#!/usr/bin/env node
// Generates src/generated/schema.ts from the gateway's OpenAPI document (../../docs/openapi.json).
//
//   node scripts/generate.mjs           write the file (npm run generate)
//   node scripts/generate.mjs --check   fail when the committed file is stale (npm run check:generated)
//
// The check generates into a temporary file and compares it byte for byte with the committed
// one, so it never touches the working tree.
import { readFile, writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const source = resolve(root, process.env.MIRAI_OPENAPI ?? "../../docs/openapi.json");
const target = join(root, "src/generated/schema.ts");
const check = process.argv.includes("--check");

async function generate() {
  const document = JSON.parse(await readFile(source, "utf8"));
  const ast = await openapiTS(document, { silent: true });
  const banner =
    COMMENT_HEADER.trimEnd() +
    `\n// Source: docs/openapi.json (${document.info?.title ?? "API"} ${document.info?.version ?? ""}).` +
    "\n// Regenerate with `npm run generate` in clients/typescript.\n\n";
  return banner + astToString(ast);
}

const generated = await generate();

if (!check) {
  await writeFile(target, generated);
  console.log(`wrote ${relative(root, target)} from ${relative(root, source)}`);
  process.exit(0);
}

const dir = await mkdtemp(join(tmpdir(), "mirai-client-"));
try {
  const fresh = join(dir, "schema.ts");
  await writeFile(fresh, generated);
  const committed = await readFile(target, "utf8").catch(() => null);
  const regenerated = await readFile(fresh, "utf8");
  if (committed === regenerated) {
    console.log(`${relative(root, target)} is up to date with ${relative(root, source)}`);
    process.exit(0);
  }
  console.error(`\n✖ ${relative(root, target)} is stale: it differs from what openapi-typescript generates`);
  console.error(`  from ${relative(root, source)}.`);
  if (committed === null) {
    console.error("  (the file does not exist)");
  } else {
    const a = committed.split("\n");
    const b = regenerated.split("\n");
    const line = a.findIndex((text, i) => text !== b[i]);
    const at = line === -1 ? a.length : line;
    console.error(`  First difference at line ${at + 1}:`);
    console.error(`    committed:   ${JSON.stringify(a[at] ?? "<end of file>")}`);
    console.error(`    regenerated: ${JSON.stringify(b[at] ?? "<end of file>")}`);
  }
  console.error("\n  Run `npm run generate` in clients/typescript and commit the result.\n");
  process.exit(1);
} finally {
  await rm(dir, { recursive: true, force: true });
}
