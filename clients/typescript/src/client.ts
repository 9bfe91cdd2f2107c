/**
 * `createMiraiClient`: the entry point. It wires the token store, the session (single-flight
 * refresh), the transport (auth header, `Idempotency-Key`, retries) and the typed openapi-fetch
 * client, whose non-2xx answers are thrown as typed errors (see `errors.ts`).
 *
 * @module
 */

import createClient, { type Client, type Middleware } from "openapi-fetch";

import {
  UnauthenticatedError,
  apiError,
  apiErrorFromResponse,
  type SessionExpiredError,
} from "./errors.js";
import type { paths } from "./generated/schema.js";
import { QuoteSocket, type QuoteSocketOptions } from "./quote-socket.js";
import { Session, type FetchLike } from "./session.js";
import { EventStream, type EventStreamOptions } from "./sse.js";
import { MemoryTokenStore, type TokenStore } from "./tokens.js";
import { Transport, type RetryOptions } from "./transport.js";
import type {
  Credentials,
  NotificationEvent,
  QuoteEvent,
  Registration,
  StreamErrorMessage,
  Tokens,
  User,
} from "./types.js";

export interface MiraiClientOptions {
  /** The gateway's base URL, e.g. `https://api.mirai.dev` (a path prefix is kept). */
  baseUrl: string;
  /** Where tokens live (default: in memory). See `WebStorageTokenStore` for browsers. */
  tokenStore?: TokenStore | undefined;
  /** The `fetch` to use (default: the global one). */
  fetch?: FetchLike | undefined;
  /** Called once when the session ends (its refresh was refused): show the sign-in page. */
  onSessionExpired?: ((error: SessionExpiredError) => void) | undefined;
  /** Automatic retries (no answer, 503, `idempotency-key-in-use`); see {@link RetryOptions}. */
  retry?: RetryOptions | undefined;
  /** Refresh this long before the access token expires (default 10 000 ms; -1: only on 401). */
  refreshLeewayMs?: number | undefined;
  /** Headers sent with every API call (e.g. `Accept-Language`). */
  headers?: Record<string, string> | undefined;
}

/** The typed openapi-fetch client of the gateway's paths. */
export type MiraiApi = Client<paths>;

/** Handlers of {@link MiraiClient.streams}`.notifications`. */
export interface NotificationStreamOptions extends Omit<EventStreamOptions, "onEvent"> {
  onNotification: (notification: NotificationEvent) => void;
  /**
   * The server's `event: error` before it ends the stream (`token_expired` when the access
   * token it was opened with expires); the stream then reconnects with a fresh token and
   * `Last-Event-ID`, and the gateway replays what was missed.
   */
  onStreamError?: ((error: StreamErrorMessage) => void) | undefined;
}

/** Handlers of {@link MiraiClient.streams}`.quotes`. */
export interface QuoteStreamOptions extends Omit<EventStreamOptions, "onEvent"> {
  onQuote: (quote: QuoteEvent) => void;
  /** The server's `event: error` (`token_expired`, `lagging`…); the stream then reconnects. */
  onStreamError?: ((error: StreamErrorMessage) => void) | undefined;
}

export interface MiraiClient {
  /**
   * The typed client of every route: `api.GET("/v1/stocks/{symbol}/quote", { params: { path:
   * { symbol: "AAPL" } } })`. Non-2xx answers reject with `ApiError` subclasses, so a resolved
   * call always holds `data` (use `unwrap` to get it typed without `undefined`).
   */
  api: MiraiApi;
  /** The transport's `fetch` (auth, refresh, idempotency, retries) for calls outside the schema. */
  fetch: FetchLike;
  session: Session;
  tokenStore: TokenStore;
  /** Signs in and stores the tokens. Rejects with `UnauthenticatedError` (wrong email or password) or `RateLimitedError` (locked out; see `retryAfter`). */
  login(credentials: Credentials): Promise<Tokens>;
  /** Creates an account (does not sign in). Rejects with `ValidationError` (e.g. the password policy). */
  register(registration: Registration): Promise<User>;
  /** Ends the session at the gateway (best effort) and clears the stored tokens. */
  logout(): Promise<void>;
  /** Whether tokens are stored. */
  isSignedIn(): Promise<boolean>;
  streams: {
    /** `GET /v1/stream/notifications` (signed in). */
    notifications(options: NotificationStreamOptions): EventStream;
    /** `GET /v1/stream/quotes?symbols=…` as Server-Sent Events. */
    quotes(symbols: string[], options: QuoteStreamOptions): EventStream;
    /** `GET /v1/stream/quotes` as a WebSocket with subscribe / unsubscribe. */
    quoteSocket(options?: QuoteSocketOptions): QuoteSocket;
  };
}

/** Throws the typed error of every non-2xx answer. */
const throwOnError: Middleware = {
  async onResponse({ response }) {
    if (!response.ok) throw await apiErrorFromResponse(response);
    return undefined;
  },
};

export function createMiraiClient(options: MiraiClientOptions): MiraiClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const tokenStore = options.tokenStore ?? new MemoryTokenStore();
  const fetchImpl: FetchLike = options.fetch ?? ((request) => globalThis.fetch(request));
  const session = new Session({
    baseUrl,
    fetch: fetchImpl,
    tokenStore,
    onSessionExpired: options.onSessionExpired,
    refreshLeewayMs: options.refreshLeewayMs,
  });
  const transport = new Transport(session, fetchImpl, options.retry);
  const api: MiraiApi = createClient<paths>({
    baseUrl,
    fetch: transport.fetch,
    headers: options.headers,
  });
  api.use(throwOnError);

  const streamUrl = (path: string) => `${baseUrl}${path}`;
  // Streams are not openapi-fetch calls: they get the client-wide headers (e.g. an API key) here.
  const withHeaders = (extra: Record<string, string> | undefined) => ({ ...options.headers, ...extra });

  return {
    api,
    fetch: transport.fetch,
    session,
    tokenStore,

    async login(credentials) {
      const { data } = await api.POST("/v1/auth/login", { body: credentials });
      await session.save(data!);
      return data!;
    },

    async register(registration) {
      const { data } = await api.POST("/v1/auth/register", { body: registration });
      return data!;
    },

    async logout() {
      const tokens = await tokenStore.get();
      try {
        if (tokens?.refreshToken) {
          await api.POST("/v1/auth/logout", { body: { refresh_token: tokens.refreshToken } });
        }
      } catch (error) {
        // An unknown refresh token means the session is already over.
        if (!(error instanceof UnauthenticatedError)) throw error;
      } finally {
        await tokenStore.clear();
      }
    },

    async isSignedIn() {
      return (await tokenStore.get()) !== null;
    },

    streams: {
      notifications({ onNotification, onStreamError, ...rest }) {
        const stream = new EventStream(transport, streamUrl("/v1/stream/notifications"), {
          ...rest,
          headers: withHeaders(rest.headers),
        });
        stream.addEventListener("notification", (event) => {
          onNotification(JSON.parse(event.data) as NotificationEvent);
        });
        stream.addEventListener("error", (event) => {
          onStreamError?.(JSON.parse(event.data) as StreamErrorMessage);
        });
        return stream;
      },

      quotes(symbols, { onQuote, onStreamError, ...rest }) {
        const list = symbols.map((s) => encodeURIComponent(s.trim())).join(",");
        const stream = new EventStream(transport, streamUrl(`/v1/stream/quotes?symbols=${list}`), {
          ...rest,
          headers: withHeaders(rest.headers),
        });
        stream.addEventListener("quote", (event) => onQuote(JSON.parse(event.data) as QuoteEvent));
        stream.addEventListener("error", (event) => {
          onStreamError?.(JSON.parse(event.data) as StreamErrorMessage);
        });
        return stream;
      },

      quoteSocket(socketOptions = {}) {
        const url = streamUrl("/v1/stream/quotes").replace(/^http/, "ws");
        return new QuoteSocket(url, { ...socketOptions, headers: withHeaders(socketOptions.headers) }, {
          accessToken: () => session.accessToken(),
          refresh: (stale) => session.refresh(stale),
        });
      },
    },
  };
}

/**
 * The `data` of an openapi-fetch call, typed without `undefined` (errors are thrown by the
 * client, so a resolved call has its data; `undefined` only for 204 answers).
 *
 * ```ts
 * const quote = await unwrap(mirai.api.GET("/v1/stocks/{symbol}/quote", { params: { path: { symbol: "AAPL" } } }));
 * ```
 */
export async function unwrap<R extends { data?: unknown; error?: unknown; response: Response }>(
  call: Promise<R>,
): Promise<DataOf<R>> {
  const result = await call;
  if (result.error !== undefined) throw apiError(result.response, result.error);
  return result.data as DataOf<R>;
}

/** The success `data` type of an openapi-fetch result. */
export type DataOf<R> = R extends { data: infer D } ? D : never;
