// Shared pieces of the browser tests: settings from the environment (set by
// scripts/browser-test), the browser, API calls from Node, screenshots.
import { mkdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";

import { chromium } from "playwright-core";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run the tests through scripts/browser-test)`);
  return value;
}

export const env = {
  /** The gateway, e.g. http://127.0.0.1:12080. */
  gateway: required("MIRAI_GATEWAY_URL").replace(/\/+$/, ""),
  /** The console on the origin the gateway's CORS list allows. */
  console: required("MIRAI_CONSOLE_URL").replace(/\/+$/, ""),
  /** The same console on an origin the gateway does not list. */
  otherOrigin: required("MIRAI_OTHER_ORIGIN_URL").replace(/\/+$/, ""),
  adminEmail: required("MIRAI_ADMIN_EMAIL"),
  adminPassword: required("MIRAI_ADMIN_PASSWORD"),
  /** Seconds an access token lives (the user service's MIRAI_ACCESS_TOKEN_TTL). */
  tokenTtl: Number(process.env.MIRAI_ACCESS_TOKEN_TTL_SECONDS ?? "20"),
  screenshots: process.env.MIRAI_SCREENSHOTS ?? ".dev/browser/screenshots",
  chromium: process.env.MIRAI_CHROMIUM ?? "/usr/bin/chromium",
  /** dev-up's PID and state directory (.dev/run-N), for the 503 test. */
  devUpPid: Number(process.env.MIRAI_DEVUP_PID ?? "0"),
  runDir: process.env.MIRAI_RUN_DIR ?? "",
};

export const PASSWORD = "correct horse battery staple";

export async function launch() {
  return chromium.launch({
    executablePath: env.chromium,
    headless: true,
    // Playwright gives every launch a fresh temporary profile (user-data-dir). Without the
    // background-networking flags Chromium's own connections are refused on a closed network.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A fresh browser context (its own storage) with a page; the browser's console errors are collected. */
export async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on("dialog", (dialog) => void dialog.accept());
  page.consoleErrors = [];
  page.on("console", (message) => {
    if (message.type() === "error") page.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => page.consoleErrors.push(String(error)));
  return page;
}

/** The console's address on `origin` with the API pointed at the gateway. */
export function consoleUrl(route, origin = env.console) {
  return `${origin}/?api=${encodeURIComponent(env.gateway)}#${route}`;
}

export async function shot(page, name) {
  await mkdir(env.screenshots, { recursive: true });
  const path = join(env.screenshots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** A call to the gateway from Node (no browser, no CORS). */
export async function api(path, { method = "GET", body, token } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  if (method === "POST") headers["idempotency-key"] = crypto.randomUUID();
  const response = await fetch(`${env.gateway}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: response.status, body: json, headers: response.headers };
}

export async function adminToken() {
  let answer;
  // A 503 (the user service's circuit) is waited out a few times.
  for (let attempt = 1; attempt <= 5; attempt++) {
    answer = await api("/v1/auth/login", {
      method: "POST",
      body: { email: env.adminEmail, password: env.adminPassword },
    });
    if (answer.status !== 503) break;
    await sleep(1000 * Number(answer.headers.get("retry-after") ?? "1"));
  }
  if (answer.status !== 200) throw new Error(`admin sign-in: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body.access_token;
}

export function uniqueEmail(tag) {
  return `browser-${tag}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` (async, truthy = done) every `everyMs` until `timeoutMs`. */
export async function until(what, check, { timeoutMs = 30_000, everyMs = 500 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await sleep(everyMs);
  }
}

let axeSource;

/**
 * Accessibility check of the page as it is now (axe-core, WCAG 2 A/AA rules): the serious and
 * critical violations, as "rule: target" lines (empty = none).
 */
export async function accessibilityProblems(page) {
  axeSource ??= await readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // @ts-ignore axe is injected above
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(" ")) }));
  });
  return result
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.targets.slice(0, 3).join(", ")}`);
}
