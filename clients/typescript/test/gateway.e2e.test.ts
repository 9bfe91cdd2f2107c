// Against a real gateway: runs only when MIRAI_TEST_GATEWAY_URL is set, e.g.
//   MIRAI_TEST_GATEWAY_URL=http://localhost:8080 npm test
// Otherwise every test here is reported as skipped.
import { describe, expect, it } from "vitest";

import { NotFoundError, createMiraiClient, unwrap } from "../src/index.js";

const baseUrl = process.env.MIRAI_TEST_GATEWAY_URL;

describe.skipIf(!baseUrl)(`real gateway (MIRAI_TEST_GATEWAY_URL=${baseUrl ?? "unset"})`, () => {
  const mirai = createMiraiClient({ baseUrl: baseUrl ?? "http://unset" });
  const email = `ts-client-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
  const password = "correct horse battery staple";

  it("registers a fresh user and logs in", async () => {
    const user = await mirai.register({ email, password, display_name: "TS client test" });
    expect(user.email).toBe(email);
    const tokens = await mirai.login({ email, password });
    expect(tokens.token_type).toBe("Bearer");
    expect(await mirai.isSignedIn()).toBe(true);
  });

  it("reads the account", async () => {
    const me = await unwrap(mirai.api.GET("/v1/me"));
    expect(me.email).toBe(email);
    expect(me.roles).toContain("user");
  });

  it("reads market data", async () => {
    const page = await unwrap(mirai.api.GET("/v1/symbols", { params: { query: {} } }));
    expect(Array.isArray(page.symbols)).toBe(true);
  });

  it("answers an unknown symbol with a 404 problem", async () => {
    const error = await mirai.api
      .GET("/v1/symbols/{symbol}", { params: { path: { symbol: "QZXW" } } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    const notFound = error as NotFoundError;
    expect(notFound.status).toBe(404);
    expect(notFound.type).toMatch(/^https:\/\/mirai\.dev\/problems\//);
    expect(notFound.requestId).toBeTruthy();
  });

  it("opens the notifications stream", async () => {
    let opened = false;
    const failures: unknown[] = [];
    const stream = mirai.streams.notifications({
      onNotification: () => {},
      onOpen: () => {
        opened = true;
      },
      onError: (error) => failures.push(error),
    });
    const deadline = Date.now() + 5000;
    while (!opened && failures.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    stream.close();
    await stream.done;
    expect(failures).toEqual([]);
    expect(opened).toBe(true);
  });

  it("logs out", async () => {
    await mirai.logout();
    expect(await mirai.isSignedIn()).toBe(false);
  });
});
