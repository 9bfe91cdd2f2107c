import { afterEach, describe, expect, it } from "vitest";

import {
  MemoryTokenStore,
  ServiceUnavailableError,
  SessionExpiredError,
  UnauthenticatedError,
  WebStorageTokenStore,
  createMiraiClient,
  unwrap,
  type SessionExpiredError as SessionExpired,
} from "../src/index.js";
import { FakeAuth, json, problem, startServer, unauthenticated, type TestServer } from "./server.js";

const user = {
  user_id: "u1",
  email: "a@example.com",
  display_name: "A",
  time_zone: "UTC",
  locale: "en",
  watchlist: [],
  roles: ["user"],
};

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A gateway with login, refresh (rotating) and `GET /v1/me`. */
async function gateway(auth: FakeAuth) {
  server = await startServer(async (req, res, body) => {
    const path = req.url ?? "";
    if (req.method === "POST" && path === "/v1/auth/refresh") return auth.handleRefresh(res, body);
    if (req.method === "POST" && path === "/v1/auth/login") {
      // The gateway refuses any invalid credential before the route runs.
      if (req.headers.authorization) return unauthenticated(res);
      const { password } = JSON.parse(body) as { password: string };
      if (password !== "correct horse battery staple") {
        return unauthenticated(res, "invalid email or password");
      }
      return json(res, 200, { ...auth.tokens(), user }, { "cache-control": "no-store" });
    }
    if (req.method === "POST" && path === "/v1/auth/logout") {
      res.writeHead(204).end();
      return;
    }
    if (req.method === "GET" && path === "/v1/me") {
      if (!auth.authorized(req)) return unauthenticated(res);
      return json(res, 200, user);
    }
    problem(res, 404, "not-found", "Not Found");
  });
  return server;
}

describe("auth and refresh", () => {
  it("refreshes on 401 and retries the call once with the new token", async () => {
    const auth = new FakeAuth();
    const s = await gateway(auth);
    const tokenStore = new MemoryTokenStore({ accessToken: "stale", refreshToken: auth.refresh });
    const mirai = createMiraiClient({ baseUrl: s.url, tokenStore });

    const me = await unwrap(mirai.api.GET("/v1/me"));

    expect(me.user_id).toBe("u1");
    expect(auth.refreshCalls).toBe(1);
    expect(s.to("/v1/me").map((r) => r.headers.authorization)).toEqual([
      "Bearer stale",
      "Bearer access-2",
    ]);
    // The refresh request carried the stored refresh token and no access token.
    const refresh = s.to("/v1/auth/refresh")[0]!;
    expect(JSON.parse(refresh.body)).toEqual({ refresh_token: "refresh-1" });
    expect(refresh.headers.authorization).toBeUndefined();
    expect(tokenStore.get()).toMatchObject({ accessToken: "access-2", refreshToken: "refresh-2" });
  });

  it("runs exactly one refresh when three calls get 401 at once", async () => {
    const auth = new FakeAuth();
    const s = await gateway(auth);
    const mirai = createMiraiClient({
      baseUrl: s.url,
      tokenStore: new MemoryTokenStore({ accessToken: "stale", refreshToken: auth.refresh }),
    });

    const results = await Promise.all([
      unwrap(mirai.api.GET("/v1/me")),
      unwrap(mirai.api.GET("/v1/me")),
      unwrap(mirai.api.GET("/v1/me")),
    ]);

    expect(results.map((r) => r.user_id)).toEqual(["u1", "u1", "u1"]);
    expect(auth.refreshCalls).toBe(1);
    expect(auth.revoked).toBe(false);
    const sent = s.to("/v1/me").map((r) => r.headers.authorization);
    expect(sent.filter((h) => h === "Bearer stale")).toHaveLength(3);
    expect(sent.filter((h) => h === "Bearer access-2")).toHaveLength(3);
  });

  it("does not refresh again for a 401 that arrives after another call refreshed", async () => {
    const auth = new FakeAuth();
    auth.refreshDelayMs = 0;
    const s = await gateway(auth);
    const tokenStore = new MemoryTokenStore({ accessToken: "stale", refreshToken: auth.refresh });
    const mirai = createMiraiClient({ baseUrl: s.url, tokenStore });
    // Someone else already refreshed: the store holds the new token, this call still sends the old one.
    await mirai.session.refresh("stale");
    expect(auth.refreshCalls).toBe(1);
    const fresh = await mirai.session.refresh("stale");
    expect(fresh).toBe("access-2");
    expect(auth.refreshCalls).toBe(1);
  });

  it("clears the tokens, calls onSessionExpired once and throws SessionExpiredError when refresh is refused", async () => {
    const auth = new FakeAuth();
    const s = await gateway(auth);
    const expired: SessionExpired[] = [];
    const tokenStore = new MemoryTokenStore({ accessToken: "stale", refreshToken: "refresh-spent" });
    const mirai = createMiraiClient({
      baseUrl: s.url,
      tokenStore,
      onSessionExpired: (error) => expired.push(error),
    });

    const outcomes = await Promise.allSettled([
      mirai.api.GET("/v1/me"),
      mirai.api.GET("/v1/me"),
    ]);

    for (const outcome of outcomes) {
      expect(outcome.status).toBe("rejected");
      const reason = (outcome as PromiseRejectedResult).reason as SessionExpiredError;
      expect(reason).toBeInstanceOf(SessionExpiredError);
      expect(reason).toBeInstanceOf(UnauthenticatedError);
      expect(reason.status).toBe(401);
      expect(reason.kind).toBe("unauthenticated");
    }
    expect(auth.refreshCalls).toBe(1);
    expect(expired).toHaveLength(1);
    expect(tokenStore.get()).toBeNull();
    expect(await mirai.isSignedIn()).toBe(false);
  });

  it("keeps the tokens when the refresh fails transiently", async () => {
    server = await startServer((req, res) => {
      if (req.url === "/v1/auth/refresh") {
        return problem(res, 503, "unavailable", "Service temporarily unavailable", "user is down", {
          "retry-after": "1",
        });
      }
      unauthenticated(res);
    });
    const tokenStore = new MemoryTokenStore({ accessToken: "stale", refreshToken: "r" });
    const mirai = createMiraiClient({ baseUrl: server.url, tokenStore });
    await expect(mirai.api.GET("/v1/me")).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(tokenStore.get()).toMatchObject({ refreshToken: "r" });
  });

  it("refreshes before sending when the access token is about to expire", async () => {
    const auth = new FakeAuth();
    const s = await gateway(auth);
    const mirai = createMiraiClient({
      baseUrl: s.url,
      tokenStore: new MemoryTokenStore({
        accessToken: "access-1",
        refreshToken: auth.refresh,
        expiresAt: Date.now() + 1000,
      }),
    });
    await unwrap(mirai.api.GET("/v1/me"));
    expect(auth.refreshCalls).toBe(1);
    expect(s.to("/v1/me").map((r) => r.headers.authorization)).toEqual(["Bearer access-2"]);
  });

  it("login stores the tokens without sending a stale access token; logout ends the session", async () => {
    const auth = new FakeAuth();
    const s = await gateway(auth);
    const storage = new Map<string, string>();
    const tokenStore = new WebStorageTokenStore({
      getItem: (k) => storage.get(k) ?? null,
      setItem: (k, v) => void storage.set(k, v),
      removeItem: (k) => void storage.delete(k),
    });
    tokenStore.set({ accessToken: "left-over", refreshToken: "old" });
    const mirai = createMiraiClient({ baseUrl: s.url, tokenStore });

    await expect(
      mirai.login({ email: "a@example.com", password: "wrong password!" }),
    ).rejects.toBeInstanceOf(UnauthenticatedError);
    const tokens = await mirai.login({ email: "a@example.com", password: "correct horse battery staple" });

    expect(tokens.access_token).toBe("access-1");
    expect(s.to("/v1/auth/login").every((r) => r.headers.authorization === undefined)).toBe(true);
    expect(JSON.parse(storage.get("miraikakaku.tokens")!)).toMatchObject({
      accessToken: "access-1",
      refreshToken: "refresh-1",
    });
    expect((await unwrap(mirai.api.GET("/v1/me"))).email).toBe("a@example.com");

    await mirai.logout();
    const logout = s.to("/v1/auth/logout")[0]!;
    expect(JSON.parse(logout.body)).toEqual({ refresh_token: "refresh-1" });
    expect(logout.headers["idempotency-key"]).toBeTruthy();
    expect(storage.size).toBe(0);
  });
});
