import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";

import {
  MemoryTokenStore,
  createMiraiClient,
  type QuoteEvent,
  type StreamErrorMessage,
} from "../src/index.js";
import { FakeAuth, until } from "./server.js";

/** A gateway-like quote socket server (routes/market/streams/websocket.rs). */
class QuoteServer {
  readonly http: Server;
  readonly wss: WebSocketServer;
  /** Per connection: its upgrade request and the client messages it received. */
  readonly connections: Array<{ request: IncomingMessage; socket: WebSocket; messages: unknown[] }> = [];
  readonly auth = new FakeAuth();
  url = "";

  constructor() {
    this.http = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        if (req.url === "/v1/auth/refresh") void this.auth.handleRefresh(res, body);
        else res.writeHead(404).end();
      });
    });
    this.wss = new WebSocketServer({ server: this.http, path: "/v1/stream/quotes" });
    this.wss.on("connection", (socket, request) => {
      const followed = new Set<string>();
      const connection = { request, socket, messages: [] as unknown[] };
      this.connections.push(connection);
      socket.on("message", (raw) => {
        const message = JSON.parse(raw.toString()) as { action: string; symbols: string[] };
        connection.messages.push(message);
        for (const symbol of message.symbols) {
          if (message.action === "subscribe") {
            if (symbol === "NOPE") {
              socket.send(JSON.stringify({ type: "error", symbol, detail: "unknown symbol NOPE" }));
              continue;
            }
            followed.add(symbol);
          } else followed.delete(symbol);
        }
        socket.send(JSON.stringify({ type: "subscribed", symbols: [...followed].sort() }));
        if (message.action === "subscribe") {
          for (const symbol of message.symbols.filter((s) => followed.has(s))) {
            socket.send(JSON.stringify({ type: "quote", symbol, last_price: 100, snapshot: true, dropped: 0 }));
          }
        }
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.http.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`;
    return this;
  }

  latest() {
    return this.connections.at(-1)!;
  }

  async stop(): Promise<void> {
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }
}

let server: QuoteServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

describe("QuoteSocket", () => {
  it("subscribes, delivers quotes, and re-subscribes the whole set after the server closes the socket", async () => {
    server = await new QuoteServer().start();
    const mirai = createMiraiClient({
      baseUrl: server.url,
      tokenStore: new MemoryTokenStore({ accessToken: "access-1", refreshToken: "refresh-1" }),
    });
    const quotes: QuoteEvent[] = [];
    const subscribed: string[][] = [];
    const errors: Array<StreamErrorMessage | Error> = [];
    const socket = mirai.streams.quoteSocket({
      symbols: ["aapl"],
      createSocket: (url, headers) => new WebSocket(url, { headers }),
      initialDelayMs: 20,
      onQuote: (q) => quotes.push(q),
      onSubscribed: (s) => subscribed.push(s),
      onError: (e) => errors.push(e),
    });

    await until(() => quotes.length === 1, 5000, "the AAPL snapshot");
    expect(server.latest().request.headers.authorization).toBe("Bearer access-1");
    expect(server.latest().messages).toEqual([{ action: "subscribe", symbols: ["AAPL"] }]);

    socket.subscribe(["MSFT", "NOPE", "AAPL"]);
    socket.unsubscribe(["AAPL"]);
    await until(() => subscribed.length === 3, 5000, "three subscribed answers");
    expect(subscribed.at(-1)).toEqual(["MSFT"]);
    expect(errors).toEqual([{ type: "error", symbol: "NOPE", detail: "unknown symbol NOPE" }]);
    expect(socket.symbols).toEqual(["MSFT"]); // the unknown symbol is dropped

    // The server goes away (e.g. a gateway restart): the client reconnects and re-subscribes.
    server.latest().socket.close(1001, "the gateway is shutting down");
    await until(() => server!.connections.length === 2 && server!.latest().messages.length === 1, 5000, "a re-subscribe");
    expect(server.latest().messages).toEqual([{ action: "subscribe", symbols: ["MSFT"] }]);
    await until(() => quotes.some((q) => q.symbol === "MSFT" && quotes.indexOf(q) > 1), 5000, "MSFT quote");
    expect(quotes[0]).toMatchObject({ type: "quote", symbol: "AAPL", snapshot: true });

    socket.close();
    await until(() => !socket.connected, 5000, "closed");
  });

  it("refreshes the token before reconnecting after close code 4001 (token expired)", async () => {
    server = await new QuoteServer().start();
    const mirai = createMiraiClient({
      baseUrl: server.url,
      tokenStore: new MemoryTokenStore({ accessToken: "access-1", refreshToken: "refresh-1" }),
    });
    const closes: Array<{ code: number; willReconnect: boolean }> = [];
    const socket = mirai.streams.quoteSocket({
      symbols: ["AAPL"],
      createSocket: (url, headers) => new WebSocket(url, { headers }),
      initialDelayMs: 20,
      onClose: ({ code, willReconnect }) => closes.push({ code, willReconnect }),
    });
    await until(() => server!.connections[0]?.messages.length === 1, 5000, "first subscribe");
    server.latest().socket.send(JSON.stringify({ type: "error", code: "token_expired", detail: "reconnect" }));
    server.latest().socket.close(4001, "token_expired");
    await until(() => server!.connections.length === 2 && server!.latest().messages.length === 1, 5000, "reconnect");

    expect(closes).toEqual([{ code: 4001, willReconnect: true }]);
    expect(server.auth.refreshCalls).toBe(1);
    expect(server.latest().request.headers.authorization).toBe("Bearer access-2");
    socket.close();
  });

  it("works with an injected WebSocket constructor (anonymous, as in a browser) and stops on 4003", async () => {
    server = await new QuoteServer().start();
    const mirai = createMiraiClient({ baseUrl: server.url });
    const closes: Array<{ code: number; willReconnect: boolean }> = [];
    const socket = mirai.streams.quoteSocket({
      WebSocket, // the `ws` class fits WebSocketConstructor as the browser one does
      symbols: ["AAPL"],
      initialDelayMs: 20,
      onClose: ({ code, willReconnect }) => closes.push({ code, willReconnect }),
    });
    await until(() => server!.connections[0]?.messages.length === 1, 5000, "subscribe");
    expect(server.latest().request.headers.authorization).toBeUndefined();
    server.latest().socket.close(4003, "revoked");
    await until(() => closes.length === 1, 5000, "close");
    expect(closes).toEqual([{ code: 4003, willReconnect: false }]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.connections).toHaveLength(1);
    expect(socket.connected).toBe(false);
  });
});
