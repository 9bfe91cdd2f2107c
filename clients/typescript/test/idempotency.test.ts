import { afterEach, describe, expect, it } from "vitest";

import { MemoryTokenStore, ServiceUnavailableError, createMiraiClient, unwrap } from "../src/index.js";
import { FakeAuth, json, problem, startServer, unauthenticated, type TestServer } from "./server.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const alert = { alert_id: "a1" };
const newAlert = { symbol: "AAPL", condition: { kind: "price_above", threshold: 200 } } as never;

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("Idempotency-Key", () => {
  it("is a fresh UUID on every POST and absent on GET", async () => {
    server = await startServer((req, res) => json(res, req.method === "POST" ? 201 : 200, alert));
    const mirai = createMiraiClient({ baseUrl: server.url });
    await mirai.api.POST("/v1/alerts", { body: newAlert });
    await mirai.api.POST("/v1/alerts", { body: newAlert });
    await mirai.api.GET("/v1/alerts");
    const [first, second, read] = server.requests;
    expect(first!.headers["idempotency-key"]).toMatch(UUID);
    expect(second!.headers["idempotency-key"]).toMatch(UUID);
    expect(first!.headers["idempotency-key"]).not.toBe(second!.headers["idempotency-key"]);
    expect(read!.headers["idempotency-key"]).toBeUndefined();
  });

  it("keeps the caller's own key", async () => {
    server = await startServer((_req, res) => json(res, 201, alert));
    const mirai = createMiraiClient({ baseUrl: server.url });
    await mirai.api.POST("/v1/alerts", { body: newAlert, headers: { "Idempotency-Key": "order-42" } });
    expect(server.requests[0]!.headers["idempotency-key"]).toBe("order-42");
  });

  it("is reused when the client retries after a 503, with the same body", async () => {
    let calls = 0;
    server = await startServer((_req, res) => {
      calls += 1;
      if (calls === 1) {
        return problem(res, 503, "overloaded", "Service overloaded", "shedding", { "retry-after": "0" });
      }
      json(res, 201, alert);
    });
    const mirai = createMiraiClient({ baseUrl: server.url });
    const created = await unwrap(mirai.api.POST("/v1/alerts", { body: newAlert }));
    expect(created).toEqual(alert);
    const [first, retry] = server.requests;
    expect(retry!.headers["idempotency-key"]).toBe(first!.headers["idempotency-key"]);
    expect(retry!.body).toBe(first!.body);
    expect(JSON.parse(retry!.body)).toEqual(newAlert);
  });

  it("is reused when the connection drops, and a 409 idempotency-key-in-use is waited out", async () => {
    let calls = 0;
    server = await startServer((req, res) => {
      calls += 1;
      if (calls === 1) return void req.socket.destroy();
      if (calls === 2) {
        return problem(res, 409, "idempotency-key-in-use", "Request already in progress", "still running", {
          "retry-after": "0",
        });
      }
      json(res, 201, alert, { "idempotent-replayed": "true" });
    });
    const mirai = createMiraiClient({ baseUrl: server.url, retry: { retries: 3, backoffMs: 10 } });
    const { data, response } = await mirai.api.POST("/v1/alerts", { body: newAlert });
    expect(data).toEqual(alert);
    expect(response.headers.get("idempotent-replayed")).toBe("true");
    const keys = new Set(server.requests.map((r) => r.headers["idempotency-key"]));
    expect(server.requests).toHaveLength(3);
    expect(keys.size).toBe(1);
  });

  it("is reused when the call is sent again after a refresh", async () => {
    const auth = new FakeAuth();
    server = await startServer(async (req, res, body) => {
      if (req.url === "/v1/auth/refresh") return auth.handleRefresh(res, body);
      if (!auth.authorized(req)) return unauthenticated(res);
      json(res, 201, alert);
    });
    const mirai = createMiraiClient({
      baseUrl: server.url,
      tokenStore: new MemoryTokenStore({ accessToken: "stale", refreshToken: auth.refresh }),
    });
    await mirai.api.POST("/v1/alerts", { body: newAlert });
    const attempts = server.to("/v1/alerts");
    expect(attempts).toHaveLength(2);
    expect(attempts[0]!.headers["idempotency-key"]).toMatch(UUID);
    expect(attempts[1]!.headers["idempotency-key"]).toBe(attempts[0]!.headers["idempotency-key"]);
    // The refresh call has a key of its own.
    expect(server.to("/v1/auth/refresh")[0]!.headers["idempotency-key"]).not.toBe(
      attempts[0]!.headers["idempotency-key"],
    );
  });

  it("does not retry a PATCH, nor wait for a Retry-After beyond maxDelayMs", async () => {
    server = await startServer((_req, res) =>
      problem(res, 503, "unavailable", "Service temporarily unavailable", "down", { "retry-after": "60" }),
    );
    const mirai = createMiraiClient({ baseUrl: server.url });
    await expect(mirai.api.PATCH("/v1/me", { body: {} })).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(mirai.api.POST("/v1/alerts", { body: newAlert })).rejects.toBeInstanceOf(
      ServiceUnavailableError,
    );
    expect(server.requests).toHaveLength(2);
  });
});
