//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations as
//! [`crate::routes::api`] registers them (so the router and the document cannot disagree),
//! served at `/openapi.json` with a Swagger UI page at `/docs` whose assets are compiled into
//! the binary (it works offline).

use serde_json::{Value, json};
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
    complete(crate::routes::api().into_openapi())
}

/// Adds to every operation the answers the layers in front of its handler can give, so a
/// client generated from the document knows every status it may meet:
///
/// - `401` on every route: a credential that is sent is checked even where none is needed;
/// - `429` on every route (rate limits, with `Retry-After`, `RateLimit`, `RateLimit-Policy`);
/// - `503` and `504` on every route that calls a service (an open circuit or no replica, with
///   `Retry-After`; the call's deadline), that is all but `/v1/status`;
/// - `403` on the admin routes;
/// - `400` wherever there is a parameter or a body to get wrong (and on every POST: a malformed
///   `Idempotency-Key`);
/// - `413`, `415` and `422` wherever there is a JSON body (too large, not JSON, not the shape);
/// - `409` (with `Retry-After`) and `422` on every POST (`Idempotency-Key` in use, or reused for
///   another request), and `413` (the body the idempotency layer reads is too large).
///
/// Every POST also gets the optional `Idempotency-Key` header parameter. A handler's own
/// description of a status comes first, then the layer's.
pub fn complete(document: OpenApi) -> OpenApi {
    let mut doc = serde_json::to_value(&document).expect("the document serialises");
    let problem =
        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let header = |description: &str, kind: &str| json!({"description": description, "schema": {"type": kind}});
    let headers = json!({
        "Retry-After": header("Seconds to wait before trying again", "integer"),
        "RateLimit": header(
            "The tightest policy's state: `\"name\";r=<remaining>;t=<seconds to reset>`",
            "string",
        ),
        "RateLimit-Policy": header(
            "The tightest policy: `\"name\";q=<quota>;w=<window seconds>`",
            "string",
        ),
        "WWW-Authenticate": header("`Bearer error=\"invalid_token\"`", "string"),
    });
    let refer = |names: &[&str]| -> Value {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    json!({"$ref": format!("#/components/headers/{n}")}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    // status, component name, description, headers.
    let generic: [(&str, &str, &str, Value); 10] = [
        (
            "400",
            "BadRequest",
            "A malformed parameter, body or Idempotency-Key",
            json!({}),
        ),
        (
            "401",
            "Unauthorized",
            "The credential sent is invalid or expired; on routes that need one, none was sent",
            refer(&["WWW-Authenticate"]),
        ),
        (
            "403",
            "Forbidden",
            "The caller lacks the role this route needs",
            json!({}),
        ),
        (
            "409",
            "IdempotencyKeyInUse",
            "A request with this Idempotency-Key is still running",
            refer(&["Retry-After"]),
        ),
        (
            "413",
            "PayloadTooLarge",
            "The request body is too large",
            json!({}),
        ),
        (
            "415",
            "UnsupportedMediaType",
            "The request body is not `application/json`",
            json!({}),
        ),
        (
            "422",
            "UnprocessableContent",
            "The body does not have the documented shape, or the Idempotency-Key was used for a different request",
            json!({}),
        ),
        (
            "429",
            "TooManyRequests",
            "Too many requests: a rate limit (see the headers) or a per-caller quota",
            refer(&["Retry-After", "RateLimit", "RateLimit-Policy"]),
        ),
        (
            "503",
            "ServiceUnavailable",
            "The service behind this route is unavailable (circuit open, no ready replica, or overloaded)",
            refer(&["Retry-After"]),
        ),
        (
            "504",
            "GatewayTimeout",
            "The service behind this route did not answer in time",
            json!({}),
        ),
    ];
    let components = doc["components"].as_object_mut().expect("components");
    components.insert("headers".into(), headers);
    components.insert(
        "parameters".into(),
        json!({"IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Makes a retry of this request safe: the same key with the same request gets the first answer again (see the API description)",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
        }}),
    );
    let responses: serde_json::Map<String, Value> = generic
        .iter()
        .map(|(_, name, description, headers)| {
            let mut response = json!({"description": description, "content": problem});
            if headers.as_object().is_some_and(|h| !h.is_empty()) {
                response["headers"] = headers.clone();
            }
            (name.to_string(), response)
        })
        .collect();
    components.insert("responses".into(), responses.into());

    let paths = doc["paths"].as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                continue;
            }
            let post = method == "post";
            let params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            let json_body = op["requestBody"]["content"]
                .get("application/json")
                .is_some();
            let admin = op["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "admin"));
            let upstream = path != "/v1/status";
            let applies = |status: &str| match status {
                "401" | "429" => true,
                "403" => admin,
                "400" => params || json_body || post,
                "409" => post,
                "413" | "422" => json_body || post,
                "415" => json_body,
                "503" | "504" => upstream,
                _ => false,
            };
            if post {
                let key = json!({"$ref": "#/components/parameters/IdempotencyKey"});
                match op["parameters"].as_array_mut() {
                    Some(list) => list.push(key),
                    None => op["parameters"] = json!([key]),
                }
            }
            let responses = op["responses"].as_object_mut().expect("responses");
            for (status, name, description, headers) in &generic {
                if !applies(status) {
                    continue;
                }
                match responses.get_mut(*status) {
                    Some(own) => {
                        let text = own["description"].as_str().unwrap_or_default();
                        own["description"] = json!(format!(
                            "{}. Also: {description}",
                            text.trim_end_matches('.')
                        ));
                        if headers.as_object().is_some_and(|h| !h.is_empty()) {
                            own["headers"] = headers.clone();
                        }
                    }
                    None => {
                        responses.insert(
                            status.to_string(),
                            json!({"$ref": format!("#/components/responses/{name}")}),
                        );
                    }
                }
            }
        }
    }
    serde_json::from_value(doc).expect("the completed document deserialises")
}
