/**
 * The signed-in session: the access token to send, and **single-flight refresh**.
 *
 * Refresh tokens rotate: `POST /v1/auth/refresh` spends the token and returns the next one,
 * and presenting a spent token revokes the whole session. So however many requests find
 * their access token refused at once, exactly one refresh runs; the others wait for it and
 * use its result. A request that comes back with `401` after another one already refreshed
 * just uses the new token (it compares the token it sent with the stored one).
 *
 * A refresh the gateway refuses (4xx: unknown, expired, spent or revoked token) ends the
 * session: the store is cleared, `onSessionExpired` is called once, and
 * {@link SessionExpiredError} is thrown. A refresh that gets no answer or a 5xx/429 keeps the
 * tokens and throws that error: the token may or may not have been spent, and the next call
 * finds out.
 *
 * @module
 */

import {
  ApiError,
  NetworkError,
  PROBLEM_TYPE_BASE,
  SessionExpiredError,
  apiErrorFromResponse,
  errorInit,
} from "./errors.js";
import type { components } from "./generated/schema.js";
import type { StoredTokens, TokenStore } from "./tokens.js";

/** The `fetch` signature the client needs (the global one, or an injected one). */
export type FetchLike = (request: Request) => Promise<Response>;

/** The token answer of login and refresh. */
export type TokenResponse = components["schemas"]["Tokens"];

/** The refresh route (tag `auth`, operation `refresh`). */
export const REFRESH_PATH = "/v1/auth/refresh";

export interface SessionOptions {
  /** The gateway's base URL, e.g. `https://api.mirai.dev`. */
  baseUrl: string;
  fetch: FetchLike;
  tokenStore: TokenStore;
  /** Called once when the session ends (refresh refused); sign the user in again. */
  onSessionExpired?: ((error: SessionExpiredError) => void) | undefined;
  /**
   * Refresh this long before the access token's `expiresAt` instead of waiting for a 401
   * (default 10 s). Set to `-1` to refresh only on 401.
   */
  refreshLeewayMs?: number | undefined;
}

export class Session {
  readonly #options: SessionOptions;
  #inflight: Promise<string> | undefined;

  constructor(options: SessionOptions) {
    this.#options = options;
  }

  /** The token store. */
  get store(): TokenStore {
    return this.#options.tokenStore;
  }

  /** Stores the tokens of a login or refresh answer. */
  async save(tokens: TokenResponse): Promise<StoredTokens> {
    const stored: StoredTokens = {
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
      expiresAt: Date.now() + tokens.expires_in * 1000,
    };
    await this.store.set(stored);
    return stored;
  }

  /**
   * The access token to send now, or `undefined` when signed out. A token about to expire is
   * refreshed first (single flight); if that refresh fails transiently the old token is
   * returned and the request's 401 handling takes over.
   */
  async accessToken(): Promise<string | undefined> {
    const tokens = await this.store.get();
    if (!tokens) return undefined;
    const leeway = this.#options.refreshLeewayMs ?? 10_000;
    const expiring =
      leeway >= 0 &&
      tokens.expiresAt !== undefined &&
      tokens.refreshToken !== undefined &&
      Date.now() >= tokens.expiresAt - leeway;
    if (!expiring) return tokens.accessToken;
    try {
      return await this.refresh(tokens.accessToken);
    } catch (error) {
      if (error instanceof SessionExpiredError) throw error;
      return tokens.accessToken;
    }
  }

  /**
   * A fresh access token. `stale` is the token a request was refused with: if the store
   * already holds another one (someone refreshed meanwhile), that one is returned without a
   * call. Concurrent callers share one refresh.
   */
  refresh(stale?: string): Promise<string> {
    this.#inflight ??= this.#refresh(stale).finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #refresh(stale: string | undefined): Promise<string> {
    const tokens = await this.store.get();
    if (tokens && stale !== undefined && tokens.accessToken !== stale) {
      return tokens.accessToken;
    }
    if (!tokens?.refreshToken) {
      const error = new SessionExpiredError({
        status: 401,
        headers: new Headers(),
        problem: {
          type: `${PROBLEM_TYPE_BASE}unauthenticated`,
          title: "Session expired",
          detail: "no refresh token is stored; sign in again",
        },
        body: undefined,
      });
      if (tokens) await this.#end(error);
      throw error;
    }
    const url = `${this.#options.baseUrl}${REFRESH_PATH}`;
    const request = new Request(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json",
        "idempotency-key": crypto.randomUUID(),
      },
      body: JSON.stringify({ refresh_token: tokens.refreshToken }),
    });
    let response: Response;
    try {
      response = await this.#options.fetch(request);
    } catch (cause) {
      throw new NetworkError(`POST ${url}`, cause);
    }
    if (response.ok) {
      const answer = (await response.json()) as TokenResponse;
      return (await this.save(answer)).accessToken;
    }
    const error = await apiErrorFromResponse(response);
    if (refused(error)) {
      const expired = new SessionExpiredError(errorInit(error, error.body));
      await this.#end(expired);
      throw expired;
    }
    throw error;
  }

  /** Clears the tokens and tells the application, once per session. */
  async #end(error: SessionExpiredError): Promise<void> {
    await this.store.clear();
    try {
      this.#options.onSessionExpired?.(error);
    } catch {
      // The application's callback must not change what the caller sees.
    }
  }
}

/** Whether a refresh answer says the token is no good (as opposed to "try again later"). */
function refused(error: ApiError): boolean {
  return error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429;
}
