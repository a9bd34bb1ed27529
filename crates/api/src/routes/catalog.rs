//! `GET /v1/catalog`, `GET /v1/catalog/{slug}`: the templates on offer, with plans and prices.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use domain::config::PackPrice;
use domain::model::Pack;
use domain::pricing::PriceBook;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wiro_client::models::CatalogAgent;

use crate::auth::AnyAuth;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{AuthErrors, UpstreamErrors};
use crate::state::AppState;

/// A template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    /// URL name; what orders use.
    pub slug: String,
    /// Wiro's template guid (orders may use it too).
    pub guid: String,
    /// Display name.
    pub title: String,
    /// One-line pitch.
    pub headline: Option<String>,
    /// Long description.
    pub description: Option<String>,
    /// Categories.
    pub categories: Vec<String>,
    /// Plans with monthly prices and credits.
    pub plans: Vec<PriceView>,
    /// Extra-credit packs (Pro only), as the operator prices them.
    pub extra_credit_packs: Vec<PriceView>,
    /// Credential groups the agent uses (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<CredentialGroupView>>,
}

/// A price, as the operator sells it (retail).
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceView {
    /// `starter`, `pro`, or a pack name (`package1`...).
    pub name: String,
    /// The price in minor units of `currency` (cents for USD): the operator's price list, or
    /// its markup where the list has none.
    pub price_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Credits included.
    pub credits: i64,
}

/// A credential group and its fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialGroupView {
    /// Group name, e.g. `instagram`.
    pub group: String,
    /// The agent can run without it.
    pub optional: bool,
    /// Fields the customer provides.
    pub fields: Vec<String>,
    /// For an OAuth provider: the account is connected with
    /// `POST /v1/agents/{id}/connections/{group}` (a required group keeps the agent in
    /// `awaiting_connection` until then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionSpec>,
}

/// How an OAuth group connects.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionSpec {
    /// `wiro` (Wiro's app) and/or `own` (the customer's app).
    pub auth_methods: Vec<String>,
    /// With `own`: the app's fields to set first (PATCH the agent's credentials).
    pub own_app_fields: Vec<String>,
}

fn connection(group: &str) -> Option<ConnectionSpec> {
    let provider = wiro_client::models::OAuthProvider::from_group(group)?;
    let mut auth_methods = vec!["own".to_owned()];
    if !provider.own_only() {
        auth_methods.insert(0, "wiro".to_owned());
    }
    Some(ConnectionSpec {
        auth_methods,
        own_app_fields: provider
            .app_fields()
            .iter()
            .map(|f| (*f).to_owned())
            .collect(),
    })
}

/// The packs the operator sells for a template (Wiro documents no field carrying them).
type Packs = BTreeMap<Pack, PackPrice>;

fn view(
    agent: &CatalogAgent,
    packs: &Packs,
    book: &PriceBook,
    with_credentials: bool,
) -> TemplateView {
    let retail = |name: &str, wholesale_cents: i64, credits: i64| {
        let (price_minor, currency) = book.retail(&agent.slug, name, wholesale_cents);
        PriceView {
            name: name.to_owned(),
            price_minor,
            currency,
            credits,
        }
    };
    let price = |name: &str, p: &wiro_client::models::PlanPrice| {
        retail(name, (p.price * 100.0).round() as i64, p.credits)
    };
    let mut plans = Vec::new();
    if let Some(p) = &agent.pricing.starter {
        plans.push(price("starter", p));
    }
    if let Some(p) = &agent.pricing.pro {
        plans.push(price("pro", p));
    }
    let credentials = with_credentials.then(|| {
        agent
            .configuration
            .as_ref()
            .map(|c| {
                c.credentials
                    .iter()
                    .filter(|(_, g)| !g.is_platform_managed())
                    .map(|(name, g)| CredentialGroupView {
                        group: name.clone(),
                        optional: g.optional.unwrap_or(false),
                        fields: g
                            .editable
                            .iter()
                            .filter(|(_, e)| **e)
                            .map(|(f, _)| f.clone())
                            .collect(),
                        connection: connection(name),
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    TemplateView {
        slug: agent.slug.clone(),
        guid: agent.guid.clone(),
        title: agent.title.clone(),
        headline: agent.headline.clone(),
        description: agent.description.clone(),
        categories: agent.categories.clone(),
        plans,
        extra_credit_packs: packs
            .iter()
            .map(|(pack, p)| retail(pack.as_str(), p.price_cents, p.credits))
            .collect(),
        credentials,
    }
}

/// Narrowing the catalog.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogQuery {
    /// Only templates whose title, slug or headline contains this (case-insensitive).
    pub search: Option<String>,
    /// Only templates in this category.
    pub category: Option<String>,
    /// At most this many templates, 1–1000 (as Wiro's `limit`; default: all that match).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Skip this many matching templates first (as Wiro's `start`; default 0).
    #[param(minimum = 0)]
    pub start: Option<i64>,
}

impl CatalogQuery {
    /// `(start, limit)` as a slice window.
    ///
    /// # Errors
    /// 400 `bad_query` naming the value out of range.
    fn window(&self) -> Result<(usize, usize), ApiError> {
        let start = match self.start {
            Some(n) if n < 0 => return Err(ApiError::bad_query("start: must be 0 or more")),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => 0,
        };
        let limit = match self.limit {
            Some(n) if !(1..=1000).contains(&n) => {
                return Err(ApiError::bad_query("limit: must be 1 to 1000"));
            }
            Some(n) => n as usize,
            None => usize::MAX,
        };
        Ok((start, limit))
    }
}

/// The templates on offer.
#[utoipa::path(
    tag = "catalog",
    security(("bearer" = [])),
    params(CatalogQuery),
    responses(
        (status = 200, description = "Active templates with plans and prices, in Wiro's order; `start` and `limit` page through them.", body = Vec<TemplateView>,
         headers(("X-Total-Count" = i64, description = "Templates matching `search` and `category`, before paging."))),
        (status = 400, description = "`start` or `limit` out of range (`bad_query`).", body = crate::error::Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[get("/catalog")]
pub async fn list_catalog(
    _auth: AnyAuth,
    state: web::Data<AppState>,
    query: web::Query<CatalogQuery>,
) -> ApiResult<HttpResponse> {
    // The whole catalog is cached (it is small); Wiro's own search and category filters are
    // applied to it here, the same way, without a call per query.
    let (start, limit) = query.window()?;
    let list = state.catalog.list(state.wiro()).await?;
    let search = query.search.as_deref().map(str::to_lowercase);
    let matches = |a: &CatalogAgent| {
        search.as_deref().is_none_or(|s| {
            [Some(&a.title), Some(&a.slug), a.headline.as_ref()]
                .into_iter()
                .flatten()
                .any(|text| text.to_lowercase().contains(s))
        }) && query
            .category
            .as_deref()
            .is_none_or(|c| a.categories.iter().any(|have| have == c))
    };
    let none = Packs::new();
    let packs = &state.settings.billing.packs;
    let book = PriceBook::load(&state.pool).await?;
    let matching: Vec<&CatalogAgent> = list.iter().filter(|a| matches(a)).collect();
    let total = matching.len();
    let page: Vec<TemplateView> = matching
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|a| view(a, packs.get(&a.slug).unwrap_or(&none), &book, false))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Total-Count", total.to_string()))
        .json(page))
}

/// One template, with the credential fields it needs.
#[utoipa::path(
    tag = "catalog",
    security(("bearer" = [])),
    params(("slug" = String, Path, description = "Template slug (or guid).")),
    responses(
        (status = 200, description = "The template.", body = TemplateView),
        (status = 404, description = "No such template.", body = crate::error::Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[get("/catalog/{slug}")]
pub async fn get_template(
    _auth: AnyAuth,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let slug = slug.into_inner();
    if slug.is_empty() || slug.len() > 200 {
        return Err(ApiError::not_found("template"));
    }
    let agent = state.catalog.detail(state.wiro(), &slug).await?;
    if agent.status != 1 {
        return Err(ApiError::not_found("template"));
    }
    let packs = state
        .settings
        .billing
        .packs
        .get(&agent.slug)
        .cloned()
        .unwrap_or_default();
    let book = PriceBook::load(&state.pool).await?;
    Ok(HttpResponse::Ok().json(view(&agent, &packs, &book, true)))
}
