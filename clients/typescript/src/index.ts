/**
 * `@miraikakaku/client`: a typed client for the MiraiKakaku REST API.
 *
 * ```ts
 * import { createMiraiClient, unwrap } from "@miraikakaku/client";
 *
 * const mirai = createMiraiClient({ baseUrl: "https://api.mirai.dev" });
 * await mirai.login({ email, password });
 * const quote = await unwrap(mirai.api.GET("/v1/stocks/{symbol}/quote", { params: { path: { symbol: "AAPL" } } }));
 * ```
 *
 * @module
 */

export { createMiraiClient, unwrap } from "./client.js";
export type {
  DataOf,
  MiraiApi,
  MiraiClient,
  MiraiClientOptions,
  NotificationStreamOptions,
  QuoteStreamOptions,
} from "./client.js";
export {
  ApiError,
  ConflictError,
  ForbiddenError,
  MiraiError,
  NetworkError,
  NotFoundError,
  PROBLEM_TYPE_BASE,
  RateLimitedError,
  ServiceUnavailableError,
  SessionExpiredError,
  UnauthenticatedError,
  ValidationError,
  apiError,
  apiErrorFromResponse,
  parseRetryAfter,
} from "./errors.js";
export type { FieldError } from "./errors.js";
export { MemoryTokenStore, WebStorageTokenStore } from "./tokens.js";
export type { StorageLike, StoredTokens, TokenStore } from "./tokens.js";
export { REFRESH_PATH, Session } from "./session.js";
export type { FetchLike, SessionOptions } from "./session.js";
export { Transport } from "./transport.js";
export type { RetryOptions, SendOptions } from "./transport.js";
export { EventStream, NotAnEventStreamError, SseParser } from "./sse.js";
export type { EventStreamOptions, EventStreamState, SseEvent } from "./sse.js";
export { QuoteSocket } from "./quote-socket.js";
export type {
  QuoteSocketMessage,
  QuoteSocketOptions,
  SocketAuth,
  WebSocketConstructor,
  WebSocketLike,
} from "./quote-socket.js";
export type * from "./types.js";
