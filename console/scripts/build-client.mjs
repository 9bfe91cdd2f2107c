// Builds the typed client (../clients/typescript) the console imports: its dist/ is not
// committed, so a clean clone has to build it. Installs its dependencies when its TypeScript
// compiler is missing, and rebuilds when dist/ is missing or older than its sources.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const client = resolve(dirname(fileURLToPath(import.meta.url)), "../../clients/typescript");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

function run(args) {
  console.log(`console: ${npm} ${args.join(" ")} (in clients/typescript)`);
  const result = spawnSync(npm, args, { cwd: client, stdio: "inherit" });
  if (result.status !== 0) {
    console.error(`console: '${npm} ${args.join(" ")}' failed in ${client}`);
    process.exit(result.status ?? 1);
  }
}

function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let max = 0;
  for (const entry of readdirSync(path)) max = Math.max(max, newest(join(path, entry)));
  return max;
}

if (!existsSync(join(client, "package.json"))) {
  console.error(`console: the client is not at ${client}`);
  process.exit(1);
}
if (!existsSync(join(client, "node_modules", "typescript", "package.json"))) {
  run(["ci", "--no-audit", "--no-fund"]);
}
const built = join(client, "dist", "index.js");
const sources = Math.max(newest(join(client, "src")), newest(join(client, "package.json")));
if (!existsSync(built) || statSync(built).mtimeMs < sources) {
  run(["run", "build"]);
}
