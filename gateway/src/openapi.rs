//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations as
//! [`crate::routes::api`] registers them (so the router and the document cannot disagree),
//! served at `/openapi.json` with a Swagger UI page at `/docs` whose assets are compiled into
//! the binary (it works offline).

use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi as _};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "MiraiKakaku API",
        description = "The REST API of MiraiKakaku (未来価格), a stock-prediction platform: market \
data, LSTM forecasts with honest live accuracy, analytics and price alerts.\n\n\
Errors are `application/problem+json` (RFC 9457) with a stable `type` under \
`https://mirai.dev/problems/`, the `request_id` and the `trace_id`. Responses carry \
`RateLimit-Policy` / `RateLimit` headers; `429` comes with `Retry-After` (also after too many \
failed authentications from one address, before any credential is looked up).\n\n\
POST requests accept an `Idempotency-Key` header (1–255 visible ASCII characters). Keys are scoped to the \
caller (the account, or the client address when anonymous) and kept 24 hours: a repeat of the \
same request (method, path, query and body) gets the stored response again with \
`Idempotent-Replayed: true`; the same key with a different request is `422`; a repeat while \
the first is still running is `409` with `Retry-After`. Not stored, so a repeat runs again: \
`429` and `5xx` answers, answers over 64 KiB, and answers that carry credentials (tokens from \
login, refresh and password change, API-key and webhook secrets, anything marked \
`Cache-Control: no-store`) — a repeated API-key or webhook creation creates a second one.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "auth", description = "Sign-up, sessions, tokens and the public key set"),
        (name = "account", description = "The caller's own account and API keys"),
        (name = "admin", description = "Accounts, roles, audit, imports and replays (admin role)"),
        (name = "market-data", description = "Symbols, bars and quotes"),
        (name = "streams", description = "Live updates over Server-Sent Events and WebSockets"),
        (name = "predictions", description = "Forecasts, models, traffic and live accuracy"),
        (name = "alerts", description = "Price and forecast alerts"),
        (name = "analytics", description = "Indicators, risk and performance statistics, trends, and report jobs"),
        (name = "notifications", description = "In-app notifications and their live stream, webhook endpoints, the delivery log, push devices and delivery preferences"),
        (name = "platform", description = "Health of the services behind the gateway"),
    ),
    // Types only query parameters name are not collected from the handlers: register them.
    components(schemas(crate::routes::shapes::Maturity)),
    modifiers(&Security),
)]
struct Base;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "Access token from `POST /v1/auth/login` (EdDSA, at most 15 minutes)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "A personal API key (`POST /v1/me/api-keys`); also accepted as `Authorization: ApiKey <key>`",
            ))),
        );
    }
}

/// The document's skeleton (info, tags, security schemes) that the routes are added to.
pub fn base() -> OpenApi {
    Base::openapi()
}

/// The whole document, as the gateway serves it.
pub fn document() -> OpenApi {
    crate::routes::api().into_openapi()
}
