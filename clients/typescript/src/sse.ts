/**
 * Server-Sent Events over `fetch`: like the browser's `EventSource`, but the request goes
 * through the client's {@link Transport}, so it carries `Authorization: Bearer …` (which
 * `EventSource` cannot send) and a refused token is refreshed like for any other call.
 *
 * - {@link SseParser} parses the wire format (WHATWG HTML §9.2): `event:`, multi-line `data:`,
 *   `id:`, `retry:`, comments (`:` lines, the gateway's keep-alives), LF / CRLF / CR line ends.
 * - {@link EventStream} connects, delivers events, and **reconnects** when the connection drops
 *   or the server ends the stream: after the server's `retry:` time (1 s until it sends one),
 *   doubled for each attempt in a row that fails to connect (up to 30 s), or after
 *   `Retry-After` on 429/503. A reconnect sends `Last-Event-ID` with the last `id:` seen.
 *   It stops for good on {@link EventStream.close}, on a 4xx answer other than 408/429 (e.g. an
 *   unknown symbol, an ended session), or when the answer is not `text/event-stream`.
 *
 * The gateway's streams: `GET /v1/stream/notifications` (`event: notification`, `id:` the
 * notification id) and `GET /v1/stream/quotes?symbols=…` (`event: quote`, and `event: error`
 * just before the server ends the stream, e.g. `token_expired`, after which this reconnects with
 * a refreshed token). **The gateway does not replay missed events**: it ignores `Last-Event-ID`;
 * notifications created while disconnected stay listable with `GET /v1/notifications` (newest
 * first), so an application that must not miss one re-reads that list in `onOpen` when
 * `reconnected` is true.
 *
 * @module
 */

import { ApiError, MiraiError, SessionExpiredError, apiErrorFromResponse } from "./errors.js";
import { sleep, type Transport } from "./transport.js";

/** One dispatched event. */
export interface SseEvent {
  /** The `event:` field, `message` when absent. */
  type: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The last event id after this event (its `id:`, or the one before). */
  lastEventId: string;
}

/**
 * Incremental SSE parser: feed it decoded text as it arrives with {@link push}; it calls
 * `onEvent` for each complete event and `onRetry` for each valid `retry:` field.
 */
export class SseParser {
  #line = "";
  #skipLf = false;
  #data: string[] = [];
  #type = "";
  #lastEventId: string;

  constructor(
    private readonly onEvent: (event: SseEvent) => void,
    private readonly onRetry: (ms: number) => void = () => {},
    lastEventId = "",
    private readonly onComment: (text: string) => void = () => {},
  ) {
    this.#lastEventId = lastEventId;
  }

  /** The last `id:` seen (kept across events, as the spec says). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Parses a chunk of text (any split: mid-line, mid-CRLF). */
  push(chunk: string): void {
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (this.#skipLf) {
        this.#skipLf = false;
        if (c === 0x0a) {
          start = i + 1;
          continue;
        }
      }
      if (c === 0x0a || c === 0x0d) {
        this.#line += chunk.slice(start, i);
        this.#processLine(this.#line);
        this.#line = "";
        start = i + 1;
        this.#skipLf = c === 0x0d;
      }
    }
    this.#line += chunk.slice(start);
  }

  /** Forgets a half-received line and event (the connection ended in the middle of it). */
  reset(): void {
    this.#line = "";
    this.#skipLf = false;
    this.#data = [];
    this.#type = "";
  }

  #processLine(line: string): void {
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line.startsWith(":")) {
      this.onComment(line.slice(1));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.#type = value;
        break;
      case "data":
        this.#data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.#lastEventId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.onRetry(Number(value));
        break;
      default:
      // Unknown fields are ignored.
    }
  }

  #dispatch(): void {
    const data = this.#data;
    const type = this.#type || "message";
    this.#data = [];
    this.#type = "";
    if (data.length === 0) return;
    this.onEvent({ type, data: data.join("\n"), lastEventId: this.#lastEventId });
  }
}

export type EventStreamState = "connecting" | "open" | "closed";

/** Options of an {@link EventStream}. */
export interface EventStreamOptions {
  /** Extra request headers (the transport adds `Authorization`). */
  headers?: Record<string, string> | undefined;
  /** Id to resume from on the first connection (sent as `Last-Event-ID`). */
  lastEventId?: string | undefined;
  /**
   * Send `Last-Event-ID` when reconnecting (default true): the gateway's notification stream
   * then replays the notifications newer than that id before going live. (Its CORS
   * configuration allows the header, so browsers on an allowed origin send it too.)
   */
  sendLastEventId?: boolean | undefined;
  /** Reconnection time until the server sends `retry:` (default 1000 ms). */
  retryMs?: number | undefined;
  /** Longest wait between attempts (default 30 000 ms). */
  maxRetryMs?: number | undefined;
  /**
   * Reconnect when nothing (not even a keep-alive comment) arrived for this long
   * (default 45 000 ms: the gateway sends a comment every 15 s; 0 turns it off).
   */
  idleTimeoutMs?: number | undefined;
  /** Called each time a connection opens; `reconnected` is false only for the first one. */
  onOpen?: ((info: { reconnected: boolean; response: Response }) => void) | undefined;
  /** Called for every event, whatever its type. */
  onEvent?: ((event: SseEvent) => void) | undefined;
  /**
   * Called for each failure: `willReconnect` tells whether the stream tries again (dropped
   * connection, 5xx, 429) or has stopped for good (4xx, session expired, not an event stream).
   */
  onError?: ((error: unknown, willReconnect: boolean) => void) | undefined;
}

/** Thrown into `onError` when a 2xx answer is not `text/event-stream`. */
export class NotAnEventStreamError extends MiraiError {
  override name = "NotAnEventStreamError";
}

/** A live SSE connection that reconnects by itself until {@link close}d. */
export class EventStream {
  readonly url: string;
  #state: EventStreamState = "connecting";
  #lastEventId: string;
  #retryMs: number;
  readonly #options: EventStreamOptions;
  readonly #transport: Transport;
  readonly #stop = new AbortController();
  readonly #listeners = new Map<string, Set<(event: SseEvent) => void>>();
  /** Resolves when the stream has stopped for good (closed, or a fatal error). */
  readonly done: Promise<void>;

  constructor(transport: Transport, url: string, options: EventStreamOptions = {}) {
    this.url = url;
    this.#transport = transport;
    this.#options = options;
    this.#lastEventId = options.lastEventId ?? "";
    this.#retryMs = options.retryMs ?? 1000;
    this.done = this.#run();
  }

  /** `connecting` (also between attempts), `open`, or `closed`. */
  get readyState(): EventStreamState {
    return this.#state;
  }

  /** The last event id received (what a reconnect sends as `Last-Event-ID`). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Listens to events of one type (`notification`, `quote`, `error`, `message`…). Returns an unsubscribe function. */
  addEventListener(type: string, listener: (event: SseEvent) => void): () => void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.removeEventListener(type, listener);
  }

  removeEventListener(type: string, listener: (event: SseEvent) => void): void {
    this.#listeners.get(type)?.delete(listener);
  }

  /** Stops the stream: aborts the connection and any pending reconnect. */
  close(): void {
    this.#state = "closed";
    this.#stop.abort();
  }

  async #run(): Promise<void> {
    const maxRetryMs = this.#options.maxRetryMs ?? 30_000;
    let failures = 0;
    let opened = false;
    while (!this.#stop.signal.aborted) {
      this.#state = "connecting";
      let wait: number;
      try {
        const connected = await this.#connect(opened);
        opened ||= connected;
        if (connected) failures = 0;
        else failures += 1;
        wait = this.#retryMs;
      } catch (error) {
        if (this.#stop.signal.aborted) break;
        const fatal = isFatal(error);
        this.#report(error, !fatal);
        if (fatal) break;
        failures += 1;
        const after = error instanceof ApiError ? error.retryAfter : undefined;
        wait = Math.max(after === undefined ? 0 : after * 1000, this.#retryMs);
      }
      if (this.#stop.signal.aborted) break;
      const backoff = Math.min(maxRetryMs, wait * 2 ** Math.max(0, failures - 1));
      try {
        await sleep(jitter(backoff), this.#stop.signal);
      } catch {
        break;
      }
    }
    this.#state = "closed";
  }

  /**
   * One connection: resolves once it has opened and then ended (the server ended the stream,
   * the connection broke or went idle), throws when it could not open.
   */
  async #connect(reconnected: boolean): Promise<boolean> {
    const attempt = new AbortController();
    const abort = () => attempt.abort();
    this.#stop.signal.addEventListener("abort", abort, { once: true });
    const headers: Record<string, string> = { accept: "text/event-stream", ...this.#options.headers };
    if (this.#lastEventId && (this.#options.sendLastEventId ?? true)) {
      headers["last-event-id"] = this.#lastEventId;
    }
    let idle: ReturnType<typeof setTimeout> | undefined;
    try {
      const response = await this.#transport.send(
        new Request(this.url, { headers, signal: attempt.signal, cache: "no-store" }),
        { retries: 0 },
      );
      if (!response.ok) throw await apiErrorFromResponse(response);
      const type = response.headers.get("content-type") ?? "";
      if (!type.toLowerCase().startsWith("text/event-stream")) {
        await response.body?.cancel();
        throw new NotAnEventStreamError(`expected text/event-stream from ${this.url}, got ${type || "no content type"}`);
      }
      if (!response.body) return false;
      this.#state = "open";
      try {
        this.#options.onOpen?.({ reconnected, response });
      } catch (error) {
        this.#report(error, true);
      }

      const idleMs = this.#options.idleTimeoutMs ?? 45_000;
      let wentIdle = false;
      const arm = () => {
        if (idleMs <= 0) return;
        clearTimeout(idle);
        idle = setTimeout(() => {
          wentIdle = true;
          attempt.abort();
        }, idleMs);
      };
      const parser = new SseParser(
        (event) => this.#deliver(event),
        (ms) => {
          this.#retryMs = ms;
        },
        this.#lastEventId,
      );
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      arm();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          arm();
          parser.push(decoder.decode(value, { stream: true }));
        }
      } catch (error) {
        // The connection broke after it had opened: report it, then reconnect without backoff.
        if (!wentIdle && !this.#stop.signal.aborted) this.#report(error, true);
      } finally {
        reader.releaseLock();
      }
      return true;
    } finally {
      clearTimeout(idle);
      this.#stop.signal.removeEventListener("abort", abort);
    }
  }

  #deliver(event: SseEvent): void {
    this.#lastEventId = event.lastEventId;
    for (const listener of [this.#options.onEvent, ...(this.#listeners.get(event.type) ?? [])]) {
      if (!listener) continue;
      try {
        listener(event);
      } catch (error) {
        this.#report(error, true);
      }
    }
  }

  #report(error: unknown, willReconnect: boolean): void {
    try {
      this.#options.onError?.(error, willReconnect);
    } catch {
      // An error handler that throws must not kill the stream.
    }
  }
}

/** Whether a failure ends the stream rather than calling for a reconnect. */
function isFatal(error: unknown): boolean {
  if (error instanceof SessionExpiredError || error instanceof NotAnEventStreamError) return true;
  if (error instanceof ApiError) {
    return error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429;
  }
  return false;
}

function jitter(ms: number): number {
  return Math.round(ms * (0.9 + Math.random() * 0.2));
}
