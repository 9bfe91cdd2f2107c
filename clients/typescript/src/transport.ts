/**
 * The `fetch` every API call goes through. For each logical call it
 *
 * 1. adds an `Idempotency-Key` (a random UUID) to a POST that has none — the same key on every
 *    attempt of the call, so a retry the gateway already ran is answered from its store
 *    (`Idempotent-Replayed: true`) instead of running twice;
 * 2. adds `Authorization: Bearer <access token>` from the session, unless the request brings
 *    its own credential (`Authorization`, `X-API-Key`) or is a sign-in route
 *    (`/v1/auth/login`, `register`, `refresh`, `logout`, `unlock`: a stale token there would be
 *    refused before the route runs);
 * 3. on `401` to a request that carried the session's token, refreshes (single flight, see
 *    {@link Session}) and sends the call once more with the new token;
 * 4. retries a call that got no answer, a `503`, or a `409 idempotency-key-in-use`, waiting for
 *    `Retry-After` (or a short backoff) — at most `retries` times, never a PATCH (not
 *    idempotent) nor a `/v1/auth/*` route (a refresh token spent by a lost answer must not be
 *    presented again).
 *
 * It returns the answer as is (errors included) or throws {@link NetworkError}; turning
 * non-2xx answers into exceptions is the caller's part (see `client.ts`).
 *
 * @module
 */

import { NetworkError, parseRetryAfter } from "./errors.js";
import type { FetchLike, Session } from "./session.js";

/** Automatic retries of calls that got no answer, a 503, or `idempotency-key-in-use`. */
export interface RetryOptions {
  /** Retries per call (default 2; 0 turns automatic retries off; the 401 refresh retry is separate). */
  retries?: number | undefined;
  /** Longest `Retry-After` the client waits for by itself (default 5000 ms); longer ones are thrown. */
  maxDelayMs?: number | undefined;
  /** First backoff without `Retry-After` (default 250 ms), doubled on each retry. */
  backoffMs?: number | undefined;
}

/** Options of one call through the transport. */
export interface SendOptions {
  /** Overrides {@link RetryOptions.retries} for this call (streams reconnect by themselves: 0). */
  retries?: number | undefined;
}

const NO_SESSION_ROUTES = /\/v1\/auth\/(login|register|refresh|logout|unlock)$/;
const AUTH_ROUTES = /\/v1\/auth\//;

export class Transport {
  readonly #session: Session;
  readonly #fetch: FetchLike;
  readonly #retry: Required<{ [K in keyof RetryOptions]: number }>;

  constructor(session: Session, fetch: FetchLike, retry: RetryOptions = {}) {
    this.#session = session;
    this.#fetch = fetch;
    this.#retry = {
      retries: retry.retries ?? 2,
      maxDelayMs: retry.maxDelayMs ?? 5000,
      backoffMs: retry.backoffMs ?? 250,
    };
  }

  /** A `fetch` for openapi-fetch and for hand-written calls. */
  readonly fetch = (request: Request): Promise<Response> => this.send(request);

  /** Sends `input` as described in the module documentation. */
  async send(input: Request, options: SendOptions = {}): Promise<Response> {
    const method = input.method.toUpperCase();
    const path = new URL(input.url).pathname;
    const headers = new Headers(input.headers);
    if (method === "POST" && !headers.has("idempotency-key")) {
      headers.set("idempotency-key", crypto.randomUUID());
    }
    const body =
      input.body !== null && method !== "GET" && method !== "HEAD"
        ? await input.arrayBuffer()
        : undefined;
    const ownCredential = headers.has("authorization") || headers.has("x-api-key");
    const useSession = !ownCredential && !NO_SESSION_ROUTES.test(path);
    const retryable = method !== "PATCH" && !AUTH_ROUTES.test(path);
    const maxRetries = retryable ? (options.retries ?? this.#retry.retries) : 0;

    let token = useSession ? await this.#session.accessToken() : undefined;
    let refreshed = false;
    let retries = 0;
    for (;;) {
      const attempt = new Headers(headers);
      if (token) attempt.set("authorization", `Bearer ${token}`);
      let response: Response;
      try {
        response = await this.#fetch(rebuild(input, attempt, body));
      } catch (cause) {
        const error = new NetworkError(`${method} ${input.url}`, cause);
        if (error.aborted || retries >= maxRetries) throw error;
        retries += 1;
        await sleep(this.#backoff(retries), input.signal, error);
        continue;
      }
      if (response.status === 401 && token && !refreshed) {
        refreshed = true;
        await discard(response);
        token = await this.#session.refresh(token);
        continue;
      }
      if (retries < maxRetries && (await worthRetrying(response))) {
        const after = parseRetryAfter(response.headers.get("retry-after"));
        const wait = after === undefined ? this.#backoff(retries + 1) : after * 1000;
        if (wait <= this.#retry.maxDelayMs) {
          retries += 1;
          await discard(response);
          await sleep(wait, input.signal);
          continue;
        }
      }
      return response;
    }
  }

  #backoff(attempt: number): number {
    const base = this.#retry.backoffMs * 2 ** (attempt - 1);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }
}

/** A fresh `Request` for one attempt (a request's body can be sent only once). */
function rebuild(input: Request, headers: Headers, body: ArrayBuffer | undefined): Request {
  return new Request(input.url, {
    method: input.method,
    headers,
    body: body ?? null,
    signal: input.signal,
    redirect: input.redirect,
    credentials: input.credentials,
    cache: input.cache,
    keepalive: input.keepalive,
    integrity: input.integrity,
    referrerPolicy: input.referrerPolicy,
  });
}

async function worthRetrying(response: Response): Promise<boolean> {
  if (response.status === 503) return true;
  if (response.status !== 409) return false;
  try {
    const problem = (await response.clone().json()) as { type?: unknown };
    return typeof problem.type === "string" && problem.type.endsWith("/idempotency-key-in-use");
  } catch {
    return false;
  }
}

async function discard(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // Nothing to release.
  }
}

/** Waits `ms`, or rejects as soon as `signal` aborts (with `onAbort`, else the signal's reason). */
export function sleep(ms: number, signal?: AbortSignal | null, onAbort?: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(onAbort ?? signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      resolve();
    }, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(onAbort ?? signal?.reason);
    };
    signal?.addEventListener("abort", abort, { once: true });
  });
}
