// A tiny HTTP server for tests: real sockets on 127.0.0.1, speaking the gateway's wire
// behaviour (problem+json, WWW-Authenticate, rotating refresh tokens) as each test needs.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export type Handler = (
  req: IncomingMessage,
  res: ServerResponse,
  body: string,
) => void | Promise<void>;

export interface TestServer {
  url: string;
  server: Server;
  /** Every request received, in order. */
  requests: Received[];
  /** Requests to one path (without the query). */
  to(path: string): Received[];
  close(): Promise<void>;
}

export async function startServer(handler: Handler): Promise<TestServer> {
  const requests: Received[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    requests.push({
      method: req.method ?? "",
      path: (req.url ?? "").split("?")[0]!,
      headers: req.headers,
      body,
    });
    try {
      await handler(req, res, body);
    } catch (error) {
      if (!res.headersSent) json(res, 500, { error: String(error) });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    requests,
    to: (path) => requests.filter((r) => r.path === path),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

/** A gateway problem+json answer (gateway/src/problem.rs). */
export function problem(
  res: ServerResponse,
  status: number,
  slug: string,
  title: string,
  detail?: string,
  headers: Record<string, string> = {},
  extra: Record<string, unknown> = {},
): void {
  res.writeHead(status, { "content-type": "application/problem+json", ...headers });
  res.end(
    JSON.stringify({
      type: `https://mirai.dev/problems/${slug}`,
      title,
      status,
      ...(detail === undefined ? {} : { detail }),
      request_id: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
      trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
      ...extra,
    }),
  );
}

/** The gateway's 401 (middleware/auth: problem + `WWW-Authenticate`). */
export function unauthenticated(res: ServerResponse, detail = "the access token is invalid or expired"): void {
  problem(res, 401, "unauthenticated", "Authentication required", detail, {
    "www-authenticate": 'Bearer error="invalid_token"',
  });
}

export const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check` holds (polling), or fails after `timeoutMs`. */
export async function until(check: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

/**
 * An auth server with rotating refresh tokens: each refresh token works once; presenting a
 * spent one revokes the family (like the user service). Access tokens are `access-<n>`.
 */
export class FakeAuth {
  generation = 1;
  refreshCalls = 0;
  revoked = false;
  /** Delay of each refresh answer (lets concurrent 401s pile up). */
  refreshDelayMs = 50;
  readonly spent = new Set<string>();

  get access(): string {
    return `access-${this.generation}`;
  }
  get refresh(): string {
    return `refresh-${this.generation}`;
  }

  authorized(req: IncomingMessage): boolean {
    return !this.revoked && req.headers.authorization === `Bearer ${this.access}`;
  }

  tokens() {
    return {
      access_token: this.access,
      token_type: "Bearer",
      expires_in: 900,
      refresh_token: this.refresh,
    };
  }

  /** Handles `POST /v1/auth/refresh`. */
  async handleRefresh(res: ServerResponse, body: string): Promise<void> {
    this.refreshCalls += 1;
    const { refresh_token } = JSON.parse(body) as { refresh_token: string };
    await delay(this.refreshDelayMs);
    if (this.spent.has(refresh_token)) {
      this.revoked = true;
      return unauthenticated(res, "the refresh token was already used; the session is revoked");
    }
    if (this.revoked || refresh_token !== this.refresh) {
      return unauthenticated(res, "unknown, expired, spent or revoked refresh token");
    }
    this.spent.add(refresh_token);
    this.generation += 1;
    json(res, 200, this.tokens(), { "cache-control": "no-store" });
  }
}
