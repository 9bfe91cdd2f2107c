/**
 * Live quotes over the WebSocket side of `GET /v1/stream/quotes`.
 *
 * The protocol (gateway `routes/market/streams/websocket.rs`): the client sends
 * `{"action":"subscribe","symbols":[…]}` / `{"action":"unsubscribe","symbols":[…]}` at any
 * time; the server answers `{"type":"subscribed","symbols":[…]}` with the whole followed set,
 * sends `{"type":"quote",…}` per update (first the current quote of a newly followed symbol,
 * `snapshot: true`), and `{"type":"error","detail":…}` for a bad message, an unknown symbol,
 * too many symbols or subscribe messages (`code` `too_many_symbols`, `rate_limited`) — the
 * socket stays open. It closes with 4001 when the access token expires, 4003 when the API key
 * is revoked, 4008 when the client reads too slowly, and 1001 at shutdown.
 *
 * {@link QuoteSocket} keeps the set of symbols you asked for, **reconnects** with backoff
 * (0.5 s doubling to 30 s, reset once a connection opens) whenever the socket closes without
 * {@link QuoteSocket.close} — except 4003, a revoked key, which stops it — and re-subscribes
 * the whole set in one message after each reconnect.
 *
 * **Credentials**: the gateway reads the credential from the `Authorization` header only, and
 * browsers cannot set headers on a WebSocket; the quote stream is public, so a browser socket
 * is anonymous (its open streams count against the client address). Where headers are possible
 * (Node's `ws`), pass `createSocket` and the socket is opened with the session's bearer token
 * (refreshed before reconnecting after 4001).
 *
 * @module
 */

import type { QuoteEvent, StreamErrorMessage } from "./types.js";

/** The part of the standard `WebSocket` API this class uses (browsers, Node ≥ 22, `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A `WebSocket` constructor (the global one, or `ws`'s default export). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** A message the server sends on the socket. */
export type QuoteSocketMessage =
  | ({ type: "quote" } & QuoteEvent)
  | { type: "subscribed"; symbols: string[] }
  | StreamErrorMessage;

/** Options of a {@link QuoteSocket}. */
export interface QuoteSocketOptions {
  /** Symbols to follow from the start. */
  symbols?: string[] | undefined;
  /**
   * Opens a socket given its URL and headers (`Authorization` when signed in); use it where
   * headers can be sent, e.g. with `ws`: `(url, headers) => new WebSocket(url, { headers })`.
   */
  createSocket?: ((url: string, headers: Record<string, string>) => WebSocketLike) | undefined;
  /** Headers for `createSocket` (e.g. `X-API-Key`); with none of `Authorization` / `X-API-Key` the session's bearer token is added. */
  headers?: Record<string, string> | undefined;
  /** The `WebSocket` constructor when `createSocket` is not given (default `globalThis.WebSocket`); no credentials are sent. */
  WebSocket?: WebSocketConstructor | undefined;
  /** First wait before reconnecting (default 500 ms), doubled per failed attempt. */
  initialDelayMs?: number | undefined;
  /** Longest wait before reconnecting (default 30 000 ms). */
  maxDelayMs?: number | undefined;
  onQuote?: ((quote: QuoteEvent) => void) | undefined;
  /** The followed set as the server confirmed it. */
  onSubscribed?: ((symbols: string[]) => void) | undefined;
  /** An error message from the server (the socket stays open) or a failure of this class. */
  onError?: ((error: StreamErrorMessage | Error) => void) | undefined;
  onOpen?: ((info: { reconnected: boolean }) => void) | undefined;
  /** The socket closed; `willReconnect` tells whether another connection follows. */
  onClose?: ((info: { code: number; reason: string; willReconnect: boolean }) => void) | undefined;
}

/** Where the socket gets its bearer token; provided by `createMiraiClient`. */
export interface SocketAuth {
  /** The current access token (refreshed first when about to expire), if signed in. */
  accessToken(): Promise<string | undefined>;
  /** A token other than `stale` (single-flight refresh). */
  refresh(stale: string): Promise<string>;
}

const OPEN = 1;
const CLOSE_TOKEN_EXPIRED = 4001;
const CLOSE_REVOKED = 4003;

export class QuoteSocket {
  readonly url: string;
  readonly #options: QuoteSocketOptions;
  readonly #auth: SocketAuth | undefined;
  readonly #symbols = new Set<string>();
  #socket: WebSocketLike | undefined;
  #closed = false;
  #opened = false;
  #failures = 0;
  #token: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `url` is the `ws://` / `wss://` URL of `/v1/stream/quotes`. */
  constructor(url: string, options: QuoteSocketOptions = {}, auth?: SocketAuth) {
    this.url = url;
    this.#options = options;
    this.#auth = auth;
    for (const symbol of normalise(options.symbols ?? [])) this.#symbols.add(symbol);
    void this.#connect(false);
  }

  /** The symbols asked for (what a reconnect subscribes to). */
  get symbols(): string[] {
    return [...this.#symbols].sort();
  }

  /** Whether the socket is open right now. */
  get connected(): boolean {
    return this.#socket?.readyState === OPEN;
  }

  /** Follows more symbols (now if connected, else on the next connection). */
  subscribe(symbols: string[]): void {
    const added = normalise(symbols).filter((s) => !this.#symbols.has(s));
    for (const symbol of added) this.#symbols.add(symbol);
    if (added.length) this.#send({ action: "subscribe", symbols: added });
  }

  /** Stops following symbols. */
  unsubscribe(symbols: string[]): void {
    const removed = normalise(symbols).filter((s) => this.#symbols.delete(s));
    if (removed.length) this.#send({ action: "unsubscribe", symbols: removed });
  }

  /** Closes the socket for good (no reconnect). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#socket?.close(1000, "closed by the client");
  }

  #send(message: { action: "subscribe" | "unsubscribe"; symbols: string[] }): void {
    if (this.#socket?.readyState === OPEN) this.#socket.send(JSON.stringify(message));
  }

  async #connect(forceRefresh: boolean): Promise<void> {
    if (this.#closed) return;
    let socket: WebSocketLike;
    try {
      socket = await this.#open(forceRefresh);
    } catch (error) {
      this.#report(error instanceof Error ? error : new Error(String(error)));
      this.#schedule(false);
      return;
    }
    if (this.#closed) {
      socket.close(1000, "closed by the client");
      return;
    }
    this.#socket = socket;
    socket.onopen = () => {
      this.#failures = 0;
      const reconnected = this.#opened;
      this.#opened = true;
      if (this.#symbols.size) this.#send({ action: "subscribe", symbols: this.symbols });
      this.#options.onOpen?.({ reconnected });
    };
    socket.onmessage = (event: { data: unknown }) => this.#receive(event.data);
    socket.onerror = () => {
      // A close event always follows; reconnecting happens there.
    };
    socket.onclose = (event: { code?: number; reason?: string }) => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      const code = event.code ?? 1006;
      const willReconnect = !this.#closed && code !== CLOSE_REVOKED;
      this.#options.onClose?.({ code, reason: event.reason ?? "", willReconnect });
      if (willReconnect) this.#schedule(code === CLOSE_TOKEN_EXPIRED);
    };
  }

  async #open(forceRefresh: boolean): Promise<WebSocketLike> {
    const { createSocket } = this.#options;
    if (createSocket) {
      const headers: Record<string, string> = { ...this.#options.headers };
      const own = Object.keys(headers).some((h) => /^(authorization|x-api-key)$/i.test(h));
      if (this.#auth && !own) {
        let token = await this.#auth.accessToken();
        if (token && forceRefresh && token === this.#token) token = await this.#auth.refresh(token);
        this.#token = token;
        if (token) headers.authorization = `Bearer ${token}`;
      }
      return createSocket(this.url, headers);
    }
    const WebSocketClass =
      this.#options.WebSocket ??
      (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketClass) {
      throw new Error("no WebSocket available: pass `WebSocket` or `createSocket` (e.g. from the `ws` package)");
    }
    return new WebSocketClass(this.url);
  }

  #schedule(forceRefresh: boolean): void {
    if (this.#closed) return;
    const first = this.#options.initialDelayMs ?? 500;
    const max = this.#options.maxDelayMs ?? 30_000;
    const delay = Math.min(max, first * 2 ** this.#failures);
    this.#failures += 1;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => void this.#connect(forceRefresh),
      Math.round(delay * (0.9 + Math.random() * 0.2)),
    );
  }

  #receive(data: unknown): void {
    let message: QuoteSocketMessage;
    try {
      message = JSON.parse(typeof data === "string" ? data : String(data)) as QuoteSocketMessage;
    } catch {
      this.#report(new Error(`unreadable message on the quote socket: ${String(data).slice(0, 200)}`));
      return;
    }
    try {
      switch (message.type) {
        case "quote":
          this.#options.onQuote?.(message);
          break;
        case "subscribed":
          this.#options.onSubscribed?.(message.symbols);
          break;
        case "error":
          // An unknown symbol (no code) is not followed: do not ask for it again on reconnect.
          if (message.symbol && message.code === undefined) this.#symbols.delete(message.symbol);
          this.#report(message);
          break;
      }
    } catch (error) {
      this.#report(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #report(error: StreamErrorMessage | Error): void {
    try {
      this.#options.onError?.(error);
    } catch {
      // A throwing handler must not break the socket.
    }
  }
}

function normalise(symbols: string[]): string[] {
  return [...new Set(symbols.map((s) => s.trim().toUpperCase()).filter(Boolean))];
}
