/**
 * Friendly names for the generated schema types, and the shapes of stream messages (which the
 * OpenAPI document describes only in prose).
 *
 * @module
 */

import type { components, operations, paths } from "./generated/schema.js";

export type { components, operations, paths };

/** Every schema of the API by name, e.g. `Schemas["Alert"]`. */
export type Schemas = components["schemas"];

export type User = Schemas["User"];
export type Tokens = Schemas["Tokens"];
export type Credentials = Schemas["Credentials"];
export type Registration = Schemas["Registration"];
export type Quote = Schemas["Quote"];
export type Notification = Schemas["Notification"];
export type Problem = Schemas["Problem"];

/** `data` of an `event: notification` on `GET /v1/stream/notifications`. */
export type NotificationEvent = Notification & {
  /** The caller's unread count after this notification. */
  unread_count: number;
  /** Messages this stream lost by reading too slowly (they stay listable). */
  dropped: number;
};

/** `data` of an `event: quote` (SSE), or a `{"type":"quote"}` WebSocket message without `type`. */
export type QuoteEvent = Quote & {
  /** True for the current quote sent first when a symbol starts being followed. */
  snapshot: boolean;
  /** Updates the gateway's shared upstream stream lost. */
  dropped: number;
};

/**
 * An error message of the quote streams: `event: error` (SSE, then the stream ends) or
 * `{"type":"error"}` (WebSocket). `code` is absent for a bad message or an unknown symbol.
 */
export interface StreamErrorMessage {
  type: "error";
  code?: "token_expired" | "revoked" | "lagging" | "ended" | "rate_limited" | "too_many_symbols" | (string & {});
  /** The symbol concerned (unknown symbol, its stream ended, lagging). */
  symbol?: string;
  detail: string;
}
