//! The OpenAPI document: every route registered with `.service(handler)` is collected by
//! utoipa-actix-web; this adds the bearer scheme, shared error responses, and the 400/500
//! answers every operation can give.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::error::Problem;

/// Document-level metadata.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wiro-reseller API",
        description = "Give each of your customers their own hosted AI agent on Wiro. Customers call the \
            `/v1` endpoints with a JWT whose `sub` is their id in your SaaS; your ops team uses \
            `/v1/admin` with a token carrying `role: \"ops\"`. Every error is `application/problem+json` \
            with a stable `code`. POSTs that create or spend accept an `Idempotency-Key`.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&SecurityAddon),
    components(schemas(Problem, crate::webhook_events::WebhookEvent)),
    tags(
        (name = "catalog", description = "Agent templates on offer."),
        (name = "agents", description = "A customer's agents: order, configure, start, stop."),
        (name = "messages", description = "Talking to an agent."),
        (name = "billing", description = "Subscriptions and credits."),
        (name = "admin", description = "Ops: customers, all agents, bulk orders, ledger, audit, jobs."),
        (name = "webhooks", description = "Ops: signed webhooks (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`) to your SaaS, their events and delivery log. Every request body is a `WebhookEvent`; each type is version 1, and a breaking change gets a new type sent next to the old one."),
        (name = "pricing", description = "Ops: the retail price list and customers' monthly statements."),
        (name = "health", description = "Liveness, readiness, metrics."),
        (name = "wiro", description = "Called by Wiro, not by customers: message callbacks (only with `wiro.callback_base_url`)."),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A JWT signed with the configured key; `sub` = customer id, `role: \"ops\"` for ops."))
                    .build(),
            ),
        );
    }
}

/// Adds the answers any operation can give (malformed request, oversized body, internal error)
/// and marks error bodies as problem documents. Runs on the collected document.
pub fn finish(openapi: &mut Document) {
    {
        let problem = || {
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "Problem",
                ))))
                .build()
        };
        for (path, item) in &mut openapi.paths.paths {
            // Customers' mutating requests pass their rate bucket first.
            let rate_limited = path.starts_with("/v1/")
                && !path.starts_with("/v1/admin")
                && !path.starts_with("/v1/wiro/");
            for (mutating, operation) in [
                (false, &mut item.get),
                (true, &mut item.post),
                (true, &mut item.put),
                (true, &mut item.patch),
                (true, &mut item.delete),
            ]
            .into_iter()
            .filter_map(|(m, o)| o.as_mut().map(|o| (m, o)))
            {
                let has_body = operation.request_body.is_some();
                let keyed = operation.parameters.iter().flatten().any(
                    |p| matches!(p, RefOr::T(p) if p.name.eq_ignore_ascii_case("Idempotency-Key")),
                );
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses.entry(status.to_owned()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content("application/problem+json", problem())
                                .build(),
                        )
                    });
                };
                if keyed {
                    add(
                        "422",
                        "The Idempotency-Key was used with a different request, or the body does not fit the schema.",
                    );
                }
                if has_body {
                    add("415", "The body is not `application/json`.");
                    add(
                        "422",
                        "The body does not fit the schema (a missing or unknown field, a wrong type).",
                    );
                }
                if keyed {
                    add(
                        "409",
                        "The Idempotency-Key is in use by a request still running.",
                    );
                }
                if mutating && rate_limited {
                    add(
                        "429",
                        "Over the customer's request rate; see `Retry-After`.",
                    );
                }
                add(
                    "400",
                    "Malformed request: bad JSON, path or query value, or Idempotency-Key.",
                );
                add("413", "The request body is too large.");
                // Liveness touches no database.
                if path != "/healthz" {
                    add(
                        "503",
                        "Busy: no database connection was free in time; retry after `Retry-After`.",
                    );
                }
                add(
                    "500",
                    "Internal error; the body carries the request id for support.",
                );
                let responses = &mut operation.responses.responses;
                // Error bodies are problem documents, not plain JSON.
                for (status, response) in responses.iter_mut() {
                    if let (false, RefOr::T(response)) = (status.starts_with('2'), response)
                        && let Some(content) = response.content.shift_remove("application/json")
                    {
                        response
                            .content
                            .insert("application/problem+json".to_owned(), content);
                    }
                }
            }
        }
    }
}

/// Answers of authenticated endpoints.
#[derive(IntoResponses)]
pub enum AuthErrors {
    /// Missing, malformed, expired or otherwise invalid bearer token.
    #[response(status = 401)]
    Unauthorized(Problem),
    /// The token's role cannot use this endpoint, or the customer is suspended or closed.
    #[response(status = 403)]
    Forbidden(Problem),
}

/// Answers when Wiro fails.
#[derive(IntoResponses)]
pub enum UpstreamErrors {
    /// Wiro failed or refused in a way the caller cannot fix.
    #[response(status = 502)]
    BadGateway(Problem),
    /// Wiro is rate limiting or not configured (see `Retry-After`).
    #[response(status = 503)]
    Unavailable(Problem),
    /// Wiro did not answer in time.
    #[response(status = 504)]
    Timeout(Problem),
}
