import { defineConfig } from "vite";

// `base: "./"`: every asset URL is relative to index.html, so the same build works at the root
// of its own origin and under the gateway's `/console/` path.
// `npm run dev` proxies the API to MIRAI_GATEWAY (default http://127.0.0.1:8080), so the
// console's default "same origin" API address works without CORS during development.
const gateway = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env
  .MIRAI_GATEWAY ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "./",
  build: {
    target: "es2022",
    sourcemap: true,
    // lightweight-charts is most of the bundle; one chunk is fine for a console.
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: {
      "/v1": { target: gateway, changeOrigin: true },
      "/openapi.json": { target: gateway, changeOrigin: true },
    },
  },
});
