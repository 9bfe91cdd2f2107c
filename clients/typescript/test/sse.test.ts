import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";

import {
  MemoryTokenStore,
  NotFoundError,
  SseParser,
  createMiraiClient,
  type NotificationEvent,
  type QuoteEvent,
  type SseEvent,
  type StreamErrorMessage,
} from "../src/index.js";
import { FakeAuth, delay, problem, startServer, unauthenticated, until, type TestServer } from "./server.js";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function parse(chunks: string[]): { events: SseEvent[]; retries: number[]; comments: string[] } {
  const events: SseEvent[] = [];
  const retries: number[] = [];
  const comments: string[] = [];
  const parser = new SseParser((e) => events.push(e), (ms) => retries.push(ms), "", (c) => comments.push(c));
  for (const chunk of chunks) parser.push(chunk);
  return { events, retries, comments };
}

describe("SseParser", () => {
  it("joins multi-line data, keeps the last id, and defaults the type to message", () => {
    const { events } = parse([
      "event: notification\nid: n1\ndata: {\"a\":\ndata: 1}\n\n",
      "data:no space\ndata:  two spaces\n\n",
      "id: n2\ndata\n\n",
    ]);
    expect(events).toEqual([
      { type: "notification", data: '{"a":\n1}', lastEventId: "n1" },
      { type: "message", data: "no space\n two spaces", lastEventId: "n1" },
      { type: "message", data: "", lastEventId: "n2" },
    ]);
  });

  it("handles CRLF and CR line ends split across chunks, comments, retry and unknown fields", () => {
    const { events, retries, comments } = parse([
      ": keep-alive\r",
      "\nretry: 2500\r\nretry: soon\r\nevent: quote\r",
      "\ndata: x\rfoo: bar\r",
      "\r",
      "data: tail-without-blank-line",
    ]);
    expect(comments).toEqual([" keep-alive"]);
    expect(retries).toEqual([2500]);
    expect(events).toEqual([{ type: "quote", data: "x", lastEventId: "" }]);
  });

  it("does not dispatch an event without data, and ignores an id containing NUL", () => {
    const { events } = parse(["event: ping\n\n", "id: a\0b\ndata: d\n\n"]);
    expect(events).toEqual([{ type: "message", data: "d", lastEventId: "" }]);
  });
});

/** Writes SSE headers and returns a writer. */
function sse(res: ServerResponse): (text: string) => void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
  res.flushHeaders();
  return (text) => res.write(text);
}

const notification = (id: string, title: string) => ({
  notification_id: id,
  category: "price_alert",
  critical: false,
  title,
  body: "AAPL crossed 200",
  data: { symbol: "AAPL" },
  read: false,
  unread_count: 3,
  dropped: 0,
});

describe("EventStream", () => {
  it("delivers notifications, reconnects after the server drops the connection, sending Last-Event-ID", async () => {
    let connections = 0;
    server = await startServer(async (req, res) => {
      connections += 1;
      const write = sse(res);
      if (connections === 1) {
        write("retry: 20\n: hello\n\n");
        write(`event: notification\nid: n1\ndata: ${JSON.stringify(notification("n1", "first"))}\n\n`);
        await delay(20);
        // A multi-line data field (JSON split over lines), then the connection breaks.
        const [head, tail] = JSON.stringify(notification("n2", "second")).split('"title"');
        write(`event: notification\nid: n2\ndata: ${head}\ndata: "title"${tail}\n\n`);
        await delay(20);
        req.socket.destroy();
        return;
      }
      write(`event: notification\nid: n3\ndata: ${JSON.stringify(notification("n3", "third"))}\n\n`);
    });
    const mirai = createMiraiClient({
      baseUrl: server.url,
      tokenStore: new MemoryTokenStore({ accessToken: "token" }),
    });
    const received: NotificationEvent[] = [];
    const opens: boolean[] = [];
    const stream = mirai.streams.notifications({
      onNotification: (n) => received.push(n),
      onOpen: ({ reconnected }) => opens.push(reconnected),
    });

    await until(() => received.length === 3, 5000, "three notifications");
    stream.close();
    await stream.done;

    expect(received.map((n) => n.title)).toEqual(["first", "second", "third"]);
    expect(received[1]!.unread_count).toBe(3);
    expect(opens).toEqual([false, true]);
    expect(stream.lastEventId).toBe("n3");
    expect(stream.readyState).toBe("closed");
    const [first, second] = server.to("/v1/stream/notifications");
    expect(first!.headers["last-event-id"]).toBeUndefined();
    expect(second!.headers["last-event-id"]).toBe("n2");
    expect(second!.headers.authorization).toBe("Bearer token");
    expect(second!.headers.accept).toBe("text/event-stream");
  });

  it("reports the notification stream's event: error token_expired and reconnects with Last-Event-ID", async () => {
    let connections = 0;
    server = await startServer(async (_req, res) => {
      connections += 1;
      const write = sse(res);
      write("retry: 20\n\n");
      if (connections === 1) {
        write(`event: notification\nid: n1\ndata: ${JSON.stringify(notification("n1", "first"))}\n\n`);
        write(`event: error\ndata: {"type":"error","code":"token_expired","detail":"the access token expired"}\n\n`);
        res.end();
        return;
      }
      write(`event: notification\nid: n2\ndata: ${JSON.stringify(notification("n2", "replayed"))}\n\n`);
    });
    const mirai = createMiraiClient({
      baseUrl: server.url,
      tokenStore: new MemoryTokenStore({ accessToken: "token" }),
    });
    const received: string[] = [];
    const errors: string[] = [];
    const stream = mirai.streams.notifications({
      onNotification: (n) => received.push(n.title),
      onStreamError: (e) => errors.push(e.code ?? ""),
    });
    await until(() => received.length === 2, 5000, "two notifications");
    stream.close();
    await stream.done;

    expect(errors).toEqual(["token_expired"]);
    expect(received).toEqual(["first", "replayed"]);
    const [, second] = server.to("/v1/stream/notifications");
    expect(second!.headers["last-event-id"]).toBe("n1");
  });

  it("reconnects after the server ends the stream (quotes: event error token_expired) and refreshes on 401", async () => {
    const auth = new FakeAuth();
    auth.refreshDelayMs = 0;
    let quoteConnections = 0;
    server = await startServer(async (req, res, body) => {
      if (req.url === "/v1/auth/refresh") return auth.handleRefresh(res, body);
      if (!auth.authorized(req)) return unauthenticated(res);
      quoteConnections += 1;
      const write = sse(res);
      write("retry: 10\n\n");
      write(`event: quote\ndata: ${JSON.stringify({ symbol: "AAPL", last_price: 200 + quoteConnections, snapshot: true, dropped: 0 })}\n\n`);
      if (quoteConnections === 1) {
        // The gateway ends a stream whose access token expired; the token is then refused.
        write(`event: error\ndata: {"type":"error","code":"token_expired","detail":"reconnect"}\n\n`);
        auth.generation += 1; // the server-side view: the old access token no longer works
        auth.spent.clear();
        res.end();
      }
    });
    const mirai = createMiraiClient({
      baseUrl: server.url,
      tokenStore: new MemoryTokenStore({ accessToken: "access-1", refreshToken: "refresh-2" }),
    });
    const quotes: QuoteEvent[] = [];
    const errors: StreamErrorMessage[] = [];
    const stream = mirai.streams.quotes(["aapl", "MSFT"], {
      onQuote: (q) => quotes.push(q),
      onStreamError: (e) => errors.push(e),
    });
    await until(() => quotes.length === 2, 5000, "a quote after reconnecting");
    stream.close();

    expect(quotes.map((q) => q.last_price)).toEqual([201, 202]);
    expect(errors).toEqual([{ type: "error", code: "token_expired", detail: "reconnect" }]);
    expect(auth.refreshCalls).toBe(1);
    const attempts = server.to("/v1/stream/quotes");
    expect(attempts.map((r) => r.headers.authorization)).toEqual([
      "Bearer access-1",
      "Bearer access-1",
      "Bearer access-3",
    ]);
    expect(server.requests[0]!.headers["last-event-id"]).toBeUndefined();
  });

  it("waits Retry-After on 503, and stops for good on a 404", async () => {
    let calls = 0;
    server = await startServer((req, res) => {
      calls += 1;
      if (calls === 1) return problem(res, 503, "unavailable", "Service temporarily unavailable", "x", { "retry-after": "0" });
      problem(res, 404, "not-found", "Not Found", "unknown symbol NOPE");
    });
    const mirai = createMiraiClient({ baseUrl: server.url });
    const failures: Array<[unknown, boolean]> = [];
    const stream = mirai.streams.quotes(["NOPE"], {
      onQuote: () => {},
      retryMs: 10,
      onError: (error, willReconnect) => failures.push([error, willReconnect]),
    });
    await stream.done;
    expect(stream.readyState).toBe("closed");
    expect(failures.map(([, again]) => again)).toEqual([true, false]);
    expect(failures[1]![0]).toBeInstanceOf(NotFoundError);
    expect(calls).toBe(2);
  });

  it("reconnects when the connection goes silent for idleTimeoutMs", async () => {
    server = await startServer((_req, res) => {
      sse(res)("retry: 10\n\n"); // then nothing: no events, no keep-alive comments
    });
    const mirai = createMiraiClient({ baseUrl: server.url });
    const stream = mirai.streams.notifications({ onNotification: () => {}, idleTimeoutMs: 100 });
    await until(() => server!.requests.length >= 2, 5000, "a reconnect");
    stream.close();
    await stream.done;
  });

  it("close() stops a stream waiting to reconnect", async () => {
    server = await startServer((req, res) => {
      sse(res)("retry: 60000\ndata: once\n\n");
      res.end();
    });
    const mirai = createMiraiClient({ baseUrl: server.url });
    const events: string[] = [];
    const stream = mirai.streams.notifications({ onNotification: () => {} });
    stream.addEventListener("message", (e) => events.push(e.data));
    await until(() => events.length === 1, 5000, "one event");
    await delay(20);
    stream.close();
    await stream.done;
    expect(server.requests).toHaveLength(1);
  });
});

describe("streams with an API key", () => {
  it("send the client-wide headers instead of a bearer token", async () => {
    server = await startServer((_req, res) => {
      sse(res)("data: hi\n\n");
      res.end();
    });
    const mirai = createMiraiClient({
      baseUrl: server.url,
      headers: { "X-API-Key": "mk_test" },
      tokenStore: new MemoryTokenStore({ accessToken: "token" }),
    });
    const stream = mirai.streams.notifications({ onNotification: () => {} });
    await until(() => server!.requests.length === 1, 5000, "a connection");
    stream.close();
    expect(server.requests[0]!.headers["x-api-key"]).toBe("mk_test");
    expect(server.requests[0]!.headers.authorization).toBeUndefined();
  });
});
