/**
 * Where the client keeps the session's tokens. The default, {@link MemoryTokenStore}, forgets
 * them with the page or process; {@link WebStorageTokenStore} keeps them in `sessionStorage`
 * or `localStorage`; implement {@link TokenStore} for anything else (a cookie bridge, a
 * secure native store…).
 *
 * @module
 */

/** The tokens of a signed-in session. */
export interface StoredTokens {
  /** The access token (a JWT, at most 15 minutes), sent as `Authorization: Bearer`. */
  accessToken: string;
  /** The refresh token: one-time use; every refresh returns the next one. */
  refreshToken?: string | undefined;
  /** When the access token expires, in milliseconds since the epoch (from `expires_in`). */
  expiresAt?: number | undefined;
}

/**
 * A place to keep tokens. Methods may be synchronous or return promises. The client reads the
 * tokens before every request, so a store shared between tabs (`localStorage`) sees a refresh
 * made by another tab.
 */
export interface TokenStore {
  get(): StoredTokens | null | Promise<StoredTokens | null>;
  set(tokens: StoredTokens): void | Promise<void>;
  clear(): void | Promise<void>;
}

/** Keeps tokens in memory (the default): gone with the page or process. */
export class MemoryTokenStore implements TokenStore {
  #tokens: StoredTokens | null;

  constructor(initial: StoredTokens | null = null) {
    this.#tokens = initial;
  }

  get(): StoredTokens | null {
    return this.#tokens;
  }

  set(tokens: StoredTokens): void {
    this.#tokens = { ...tokens };
  }

  clear(): void {
    this.#tokens = null;
  }
}

/** The part of the Web Storage API (`sessionStorage`, `localStorage`) the store needs. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * Keeps tokens as JSON under one key of a Web Storage area, e.g.
 * `new WebStorageTokenStore(sessionStorage)`. Prefer `sessionStorage` (per tab, gone when the
 * tab closes); `localStorage` survives restarts but is readable by any script on the origin.
 */
export class WebStorageTokenStore implements TokenStore {
  constructor(
    private readonly storage: StorageLike,
    private readonly key = "miraikakaku.tokens",
  ) {}

  get(): StoredTokens | null {
    const raw = this.storage.getItem(this.key);
    if (!raw) return null;
    try {
      const parsed = JSON.parse(raw) as Partial<StoredTokens>;
      return typeof parsed.accessToken === "string" ? (parsed as StoredTokens) : null;
    } catch {
      return null;
    }
  }

  set(tokens: StoredTokens): void {
    this.storage.setItem(this.key, JSON.stringify(tokens));
  }

  clear(): void {
    this.storage.removeItem(this.key);
  }
}
