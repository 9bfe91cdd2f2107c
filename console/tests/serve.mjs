// A tiny static file server for the built console (no dependencies):
//   node tests/serve.mjs <dir> <port> [<port>...]
// Listens on 127.0.0.1 on each port (each one is a separate browser origin), serves <dir>
// with index.html for "/", and prints "serving <dir> on http://127.0.0.1:<port>" per port.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize, resolve, sep } from "node:path";

const [dirArg, ...portArgs] = process.argv.slice(2);
if (!dirArg || portArgs.length === 0) {
  console.error("usage: node tests/serve.mjs <dir> <port> [<port>...]");
  process.exit(2);
}
const root = resolve(dirArg);
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

async function handle(request, response) {
  const url = new URL(request.url ?? "/", "http://localhost");
  let path;
  try {
    path = normalize(join(root, decodeURIComponent(url.pathname)));
  } catch {
    response.writeHead(400).end();
    return;
  }
  if (path !== root && !path.startsWith(root + sep)) {
    response.writeHead(403).end();
    return;
  }
  try {
    let info = await stat(path);
    if (info.isDirectory()) {
      path = join(path, "index.html");
      info = await stat(path);
    }
    response.writeHead(200, {
      "content-type": TYPES[extname(path)] ?? "application/octet-stream",
      "content-length": info.size,
      "cache-control": "no-cache",
    });
    if (request.method === "HEAD") response.end();
    else createReadStream(path).pipe(response);
  } catch {
    response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }
}

for (const port of portArgs) {
  const server = createServer((request, response) => {
    handle(request, response).catch(() => response.destroy());
  });
  server.listen(Number(port), "127.0.0.1", () => {
    console.log(`serving ${root} on http://127.0.0.1:${port}`);
  });
}
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
