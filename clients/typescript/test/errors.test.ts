import { afterEach, describe, expect, it } from "vitest";

import {
  ApiError,
  ConflictError,
  ForbiddenError,
  NetworkError,
  NotFoundError,
  RateLimitedError,
  ServiceUnavailableError,
  ValidationError,
  createMiraiClient,
  parseRetryAfter,
} from "../src/index.js";
import { problem, startServer, type TestServer } from "./server.js";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A server answering each path with a fixed error. */
async function answering(routes: Record<string, (res: import("node:http").ServerResponse) => void>) {
  server = await startServer((req, res) => {
    const route = routes[(req.url ?? "").split("?")[0]!];
    if (route) return route(res);
    problem(res, 404, "not-found", "Not Found", "no such route");
  });
  return createMiraiClient({ baseUrl: server.url, retry: { retries: 0 } });
}

async function failure(call: Promise<unknown>): Promise<ApiError> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

describe("problem+json errors", () => {
  it("maps 400 to ValidationError with the problem fields and the field named by detail", async () => {
    const mirai = await answering({
      "/v1/auth/register": (res) =>
        problem(res, 400, "invalid-request", "Invalid request", "password: must be at least 12 characters"),
    });
    const error = await failure(
      mirai.api.POST("/v1/auth/register", { body: { email: "a@example.com", password: "short" } }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({
      status: 400,
      type: "https://mirai.dev/problems/invalid-request",
      kind: "invalid-request",
      title: "Invalid request",
      detail: "password: must be at least 12 characters",
      requestId: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    });
    expect((error as ValidationError).fieldErrors).toEqual([
      { field: "password", message: "must be at least 12 characters" },
    ]);
    expect(error.message).toBe("400 Invalid request: password: must be at least 12 characters");
  });

  it("maps 422 with an `errors` member to ValidationError with every field", async () => {
    const mirai = await answering({
      "/v1/alerts": (res) =>
        problem(res, 422, "invalid-body", "Invalid request body", "2 fields", {}, {
          errors: [
            { pointer: "/symbol", detail: "unknown ticker" },
            { field: "threshold", message: "must be positive" },
          ],
        }),
    });
    const error = (await failure(mirai.api.GET("/v1/alerts"))) as ValidationError;
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.fieldErrors).toEqual([
      { field: "/symbol", message: "unknown ticker" },
      { field: "threshold", message: "must be positive" },
    ]);
  });

  it("maps 403, 404 and 409 to their classes", async () => {
    const mirai = await answering({
      "/v1/admin/users": (res) => problem(res, 403, "forbidden", "Forbidden", "this route needs the admin role"),
      "/v1/stocks/NOPE/quote": (res) => problem(res, 404, "not-found", "Not Found", "unknown symbol NOPE"),
      "/v1/me": (res) => problem(res, 409, "conflict", "Conflict with the current state", "being deleted"),
    });
    expect(await failure(mirai.api.GET("/v1/admin/users"))).toBeInstanceOf(ForbiddenError);
    const notFound = await failure(
      mirai.api.GET("/v1/stocks/{symbol}/quote", { params: { path: { symbol: "NOPE" } } }),
    );
    expect(notFound).toBeInstanceOf(NotFoundError);
    expect(notFound.kind).toBe("not-found");
    expect(await failure(mirai.api.PATCH("/v1/me", { body: {} }))).toBeInstanceOf(ConflictError);
  });

  it("parses Retry-After of 429 and 503, and names the upstream", async () => {
    const mirai = await answering({
      "/v1/auth/login": (res) =>
        problem(res, 429, "rate-limited", "Too many requests", "locked out", { "retry-after": "30" }),
      "/v1/analytics/trends": (res) =>
        problem(res, 503, "unavailable", "Service temporarily unavailable", "analytics is down", {
          "retry-after": "7",
        }, { upstream: "analytics" }),
    });
    const limited = await failure(mirai.login({ email: "a@example.com", password: "x".repeat(12) }));
    expect(limited).toBeInstanceOf(RateLimitedError);
    expect(limited.retryAfter).toBe(30);

    const down = await failure(mirai.api.GET("/v1/analytics/trends"));
    expect(down).toBeInstanceOf(ServiceUnavailableError);
    expect(down.retryAfter).toBe(7);
    expect(down.upstream).toBe("analytics");
  });

  it("turns a non-problem body into an ApiError with the text as detail", async () => {
    const mirai = await answering({
      "/v1/status": (res) => {
        res.writeHead(502, { "content-type": "text/html", "x-request-id": "req-7" });
        res.end("<html><body>Bad Gateway</body></html>");
      },
    });
    const error = await failure(mirai.api.GET("/v1/status"));
    expect(error.constructor).toBe(ApiError);
    expect(error).toMatchObject({ status: 502, type: "about:blank", kind: undefined, requestId: "req-7" });
    expect(error.title).toBe("Bad Gateway");
    expect(error.detail).toContain("Bad Gateway");
  });

  it("throws NetworkError when nothing answers", async () => {
    const s = await startServer(() => {});
    const url = s.url;
    await s.close();
    const mirai = createMiraiClient({ baseUrl: url, retry: { retries: 0 } });
    const error = await mirai.api.GET("/v1/status").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).message).toContain("GET");
  });

  it("parses Retry-After as seconds or an HTTP date", () => {
    expect(parseRetryAfter("120")).toBe(120);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter("soon")).toBeUndefined();
    const inTenSeconds = new Date(Date.now() + 10_000).toUTCString();
    expect(parseRetryAfter(inTenSeconds)).toBeGreaterThanOrEqual(9);
    expect(parseRetryAfter(inTenSeconds)).toBeLessThanOrEqual(10);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT")).toBe(0);
  });
});
