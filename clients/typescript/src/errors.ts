/**
 * Typed errors. Every failed call rejects with a {@link MiraiError}:
 *
 * - {@link ApiError} — the gateway (or something in front of it) answered with a non-2xx
 *   status. The gateway's errors are `application/problem+json` (RFC 9457); their fields are
 *   exposed as properties. Subclasses exist for the statuses a client usually handles:
 *   {@link ValidationError} (400, 422), {@link UnauthenticatedError} (401, and its subclass
 *   {@link SessionExpiredError}), {@link ForbiddenError} (403), {@link NotFoundError} (404),
 *   {@link ConflictError} (409), {@link RateLimitedError} (429) and
 *   {@link ServiceUnavailableError} (503). Use `instanceof`, or switch on `status` / `kind`.
 * - {@link NetworkError} — no answer at all (connection refused, DNS, CORS, aborted…).
 *
 * @module
 */

import type { components } from "./generated/schema.js";

/** The problem body as the OpenAPI document describes it. */
export type Problem = components["schemas"]["Problem"];

/** Base URI of the gateway's problem types; `kind` is what follows it. */
export const PROBLEM_TYPE_BASE = "https://mirai.dev/problems/";

/** One invalid field, from a problem's `errors` member or the `field: message` of its `detail`. */
export interface FieldError {
  /** The field's name or JSON pointer, e.g. `password` or `/condition/threshold`. */
  field: string;
  message: string;
}

/** Base class of every error this client throws. */
export class MiraiError extends Error {
  override name = "MiraiError";
}

/** The request got no HTTP answer (connection refused or reset, DNS failure, CORS, abort). */
export class NetworkError extends MiraiError {
  override name = "NetworkError";
  /** The request that failed, as `METHOD url`. */
  readonly request: string;

  constructor(request: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`${request} failed without an answer: ${reason}`, { cause });
    this.request = request;
  }

  /** Whether the caller aborted the request (its `AbortSignal` fired). */
  get aborted(): boolean {
    const cause = this.cause as { name?: string } | undefined;
    return cause?.name === "AbortError" || cause?.name === "TimeoutError";
  }
}

/** A non-2xx answer. Carries the problem+json fields when the body is one. */
export class ApiError extends MiraiError {
  override name = "ApiError";
  /** The HTTP status of the answer. */
  readonly status: number;
  /** The problem type URI (`about:blank` when the body was not problem+json). */
  readonly type: string;
  /**
   * The problem type without the gateway's base URI, e.g. `not-found`, `rate-limited`,
   * `idempotency-key-in-use`; `undefined` for foreign types and non-problem bodies.
   */
  readonly kind: string | undefined;
  readonly title: string;
  readonly detail: string | undefined;
  readonly instance: string | undefined;
  /** The gateway's `x-request-id` of the request (from the body, else the header). */
  readonly requestId: string | undefined;
  /** The W3C trace id of the request, to find its logs. */
  readonly traceId: string | undefined;
  /** The service behind the gateway that could not answer (with 503/504), e.g. `analytics`. */
  readonly upstream: string | undefined;
  /** Seconds to wait before retrying, from `Retry-After` (delta-seconds or HTTP date). */
  readonly retryAfter: number | undefined;
  /** The parsed body: the problem object, other JSON, or the text. */
  readonly body: unknown;
  /** The answer's headers. */
  readonly headers: Headers;

  constructor(init: ApiErrorInit) {
    const { status, problem } = init;
    const detail = str(problem.detail);
    const title = str(problem.title) ?? (init.statusText || `HTTP ${status}`);
    super(detail ? `${status} ${title}: ${detail}` : `${status} ${title}`);
    this.status = status;
    this.type = str(problem.type) ?? "about:blank";
    this.kind = this.type.startsWith(PROBLEM_TYPE_BASE)
      ? this.type.slice(PROBLEM_TYPE_BASE.length)
      : undefined;
    this.title = title;
    this.detail = detail;
    this.instance = str(problem.instance);
    this.requestId = str(problem.request_id) ?? init.headers.get("x-request-id") ?? undefined;
    this.traceId = str(problem.trace_id);
    this.upstream = str(problem.upstream);
    this.retryAfter = parseRetryAfter(init.headers.get("retry-after"));
    this.body = init.body;
    this.headers = init.headers;
  }
}

/** What {@link ApiError}'s constructor takes; see {@link apiErrorFromResponse}. */
export interface ApiErrorInit {
  status: number;
  statusText?: string;
  headers: Headers;
  /** Problem fields (empty for a non-problem body). */
  problem: Partial<Record<keyof Problem | "errors", unknown>>;
  body: unknown;
}

/**
 * 400 or 422: the request was invalid. The gateway uses 400 for invalid fields, queries and
 * bodies, and 422 for a JSON body of the wrong shape or an `Idempotency-Key` reused with a
 * different request.
 */
export class ValidationError extends ApiError {
  override name = "ValidationError";
  /**
   * The invalid fields: the problem's `errors` member when present, else the field named by
   * `detail` (the gateway writes `field: what is wrong`). May be empty.
   */
  readonly fieldErrors: FieldError[];

  constructor(init: ApiErrorInit) {
    super(init);
    this.fieldErrors = fieldErrors(init.problem.errors, this.detail);
  }
}

/** 401: no, an invalid or an expired credential. */
export class UnauthenticatedError extends ApiError {
  override name = "UnauthenticatedError";
}

/**
 * The session ended: the refresh token was refused (expired, spent, revoked), or there was
 * none. The token store has been cleared and `onSessionExpired` called; sign in again.
 */
export class SessionExpiredError extends UnauthenticatedError {
  override name = "SessionExpiredError";
}

/** 403: authenticated, but not allowed (e.g. an admin route, or an API key where a session is needed). */
export class ForbiddenError extends ApiError {
  override name = "ForbiddenError";
}

/** 404: no such resource (e.g. an unknown symbol). */
export class NotFoundError extends ApiError {
  override name = "NotFoundError";
}

/**
 * 409: conflicts with the current state, already exists, or (`kind` `idempotency-key-in-use`)
 * a request with the same `Idempotency-Key` is still running — see `retryAfter`.
 */
export class ConflictError extends ApiError {
  override name = "ConflictError";
}

/** 429: a rate limit, lockout or stream limit; wait `retryAfter` seconds. */
export class RateLimitedError extends ApiError {
  override name = "RateLimitedError";
}

/** 503: a service behind the gateway is down or shedding load (`upstream` names it); retry after `retryAfter` seconds. */
export class ServiceUnavailableError extends ApiError {
  override name = "ServiceUnavailableError";
}

/** The parts of an answer an error is made from (a `Response`, or an {@link ApiError}). */
export interface AnswerHead {
  status: number;
  statusText?: string;
  headers: Headers;
}

const BY_STATUS: Record<number, new (init: ApiErrorInit) => ApiError> = {
  400: ValidationError,
  401: UnauthenticatedError,
  403: ForbiddenError,
  404: NotFoundError,
  409: ConflictError,
  422: ValidationError,
  429: RateLimitedError,
  503: ServiceUnavailableError,
};

/**
 * The typed error for an answer's status, from its already-read body. A JSON object body
 * fills the problem fields; a text body (e.g. a proxy's HTML page) becomes `detail` (its
 * first 500 characters).
 */
export function apiError(
  response: AnswerHead,
  body: unknown,
): ApiError {
  const Class = BY_STATUS[response.status] ?? ApiError;
  return new Class(errorInit(response, body));
}

/** The {@link ApiErrorInit} of an answer and its already-read body. */
export function errorInit(
  response: AnswerHead,
  body: unknown,
): ApiErrorInit {
  const problem: ApiErrorInit["problem"] = isObject(body)
    ? body
    : typeof body === "string" && body.trim()
      ? { detail: body.trim().slice(0, 500) }
      : {};
  return {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
    problem,
    body,
  };
}

/** Reads a non-2xx response's body (JSON or text) and returns the matching typed error. */
export async function apiErrorFromResponse(response: Response): Promise<ApiError> {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // A body that fails to read still yields an error for the status.
  }
  let body: unknown = text || undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: keep the text.
  }
  return apiError(response, body);
}

/**
 * Seconds from a `Retry-After` value: delta-seconds (`"30"`) or an HTTP date (rounded up,
 * at least 0). `undefined` when absent or unparsable.
 */
export function parseRetryAfter(value: string | null | undefined): number | undefined {
  if (value == null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

function fieldErrors(errors: unknown, detail: string | undefined): FieldError[] {
  if (Array.isArray(errors)) {
    return errors.flatMap((e): FieldError[] => {
      if (!isObject(e)) return [];
      const field = str(e.field) ?? str(e.pointer) ?? str(e.name) ?? "";
      const message = str(e.message) ?? str(e.detail) ?? "";
      return [{ field, message }];
    });
  }
  if (isObject(errors)) {
    // `{ "field": "message" }` or `{ "field": ["message", …] }`
    return Object.entries(errors).flatMap(([field, v]) =>
      (Array.isArray(v) ? v : [v]).map((m) => ({ field, message: String(m) })),
    );
  }
  // The gateway's detail names the field first: `password: must be at least 12 characters`.
  const match = detail?.match(/^([A-Za-z_][\w.[\]/-]*): (.+)$/s);
  return match ? [{ field: match[1]!, message: match[2]! }] : [];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
