// Plain-language messages for the client's typed errors (problem+json underneath).
import {
  ApiError,
  ForbiddenError,
  NetworkError,
  NotFoundError,
  RateLimitedError,
  ServiceUnavailableError,
  SessionExpiredError,
  UnauthenticatedError,
  ValidationError,
} from "@miraikakaku/client";

import { h } from "./dom.ts";

const SERVICES: Record<string, string> = {
  user: "account",
  "stock-data": "market data",
  prediction: "prediction",
  analytics: "analytics",
  notification: "notification",
};

export interface Readable {
  /** One sentence for the user. */
  message: string;
  /** What the server said (its `detail`), when it adds something. */
  detail?: string | undefined;
  /** The request id, for a bug report. */
  requestId?: string | undefined;
}

function inSeconds(seconds: number | undefined): string {
  if (seconds === undefined) return "in a moment";
  return `in ${Math.max(1, Math.ceil(seconds))} s`;
}

export function readable(error: unknown): Readable {
  if (error instanceof RateLimitedError) {
    return {
      message: `Too many requests — try again ${inSeconds(error.retryAfter)}.`,
      detail: error.detail,
      requestId: error.requestId,
    };
  }
  if (error instanceof ServiceUnavailableError) {
    const service = error.upstream ? `The ${SERVICES[error.upstream] ?? error.upstream} service` : "The service";
    return {
      message: `${service} is unavailable right now — try again ${inSeconds(error.retryAfter)}.`,
      requestId: error.requestId,
    };
  }
  if (error instanceof SessionExpiredError) {
    return { message: "Your session has ended — please sign in again." };
  }
  if (error instanceof UnauthenticatedError) {
    return { message: "Not signed in, or the email or password is wrong.", requestId: error.requestId };
  }
  if (error instanceof ForbiddenError) {
    return { message: "You are not allowed to do that.", detail: error.detail, requestId: error.requestId };
  }
  if (error instanceof NotFoundError) {
    return { message: error.detail ?? "Not found.", requestId: error.requestId };
  }
  if (error instanceof ValidationError) {
    const fields = error.fieldErrors.map((f) => (f.field ? `${f.field}: ${f.message}` : f.message));
    return {
      message: "Please check the input.",
      detail: fields.length > 0 ? fields.join("; ") : error.detail,
      requestId: error.requestId,
    };
  }
  if (error instanceof ApiError) {
    if (error.status === 504) {
      const service = error.upstream ? `The ${SERVICES[error.upstream] ?? error.upstream} service` : "The service";
      return { message: `${service} took too long to answer — try again.`, requestId: error.requestId };
    }
    return { message: `${error.title || `Error ${error.status}`}.`, detail: error.detail, requestId: error.requestId };
  }
  if (error instanceof NetworkError) {
    return { message: "Cannot reach the API — check the connection or the API address (see Settings)." };
  }
  return { message: error instanceof Error ? error.message : String(error) };
}

/** An error box: `role="alert"` so screen readers announce it. */
export function errorBox(error: unknown): HTMLElement {
  const r = readable(error);
  return h(
    "div",
    { class: "error", role: "alert" },
    h("p", { class: "error-message" }, r.message),
    r.detail && r.detail !== r.message ? h("p", { class: "error-detail" }, r.detail) : null,
    r.requestId ? h("p", { class: "error-id" }, `Request id: ${r.requestId}`) : null,
  );
}
