//! `Agent/List` and `Agent/Detail`: the public catalog of agent templates.

use serde::{Deserialize, Serialize};

use super::UnixTime;
use super::configuration::{AgentConfiguration, RateLimit};
use super::lenient::{LenientInt, opt_time};

/// Body of `Agent/List`. Every field is optional.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentListRequest {
    /// Full-text search over titles and descriptions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// Category filter, e.g. `social-media`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Sort column (`id`, `title`, `slug`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// `ASC` or `DESC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// Page size (max 1000, default 20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<u32>,
}

/// Answer of `Agent/List`.
#[derive(Clone, Debug, Deserialize)]
pub struct AgentListResponse {
    /// Number of templates matching the filter.
    #[serde(default)]
    pub total: LenientInt,
    /// This page of templates.
    #[serde(default)]
    pub agents: Vec<CatalogAgent>,
}

/// Body of `Agent/Detail`: `guid` or `slug` (slug wins), and `type: "full"` for the whole
/// configuration tree.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentDetailRequest {
    /// Template guid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// Template slug.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// `"full"` for the complete configuration.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub detail_type: Option<String>,
}

/// Answer of `Agent/Detail`: a one-element list.
#[derive(Clone, Debug, Deserialize)]
pub struct AgentDetailResponse {
    /// The template (Wiro wraps it in an array).
    #[serde(default)]
    pub agents: Vec<CatalogAgent>,
}

/// A catalog template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogAgent {
    /// Numeric id (instances refer to it as `agentid`).
    pub id: i64,
    /// Template guid, used by Deploy.
    pub guid: String,
    /// Display name.
    pub title: String,
    /// URL-safe name.
    pub slug: String,
    /// One-line pitch.
    #[serde(default)]
    pub headline: Option<String>,
    /// Long description.
    #[serde(default)]
    pub description: Option<String>,
    /// Cover image URL.
    #[serde(default)]
    pub cover: Option<String>,
    /// Categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Sample image URLs.
    #[serde(default)]
    pub samples: Vec<String>,
    /// Plan prices and credit allowances.
    #[serde(default)]
    pub pricing: Pricing,
    /// Skill names.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Per-action credit costs (Detail only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<RateLimit>,
    /// Credentials schema (trimmed) or the whole tree (`type: "full"`); Detail only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<AgentConfiguration>,
    /// 1 = active.
    #[serde(default)]
    pub status: i64,
    /// Creation time (a numeric string in the docs).
    #[serde(default, deserialize_with = "opt_time")]
    pub createdat: Option<UnixTime>,
    /// Last change.
    #[serde(default, deserialize_with = "opt_time")]
    pub updatedat: Option<UnixTime>,
}

/// `pricing`: the two plans. (Packs are priced nowhere in the documented responses; the
/// operator configures their prices.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pricing {
    /// Starter plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starter: Option<PlanPrice>,
    /// Pro plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pro: Option<PlanPrice>,
}

impl Pricing {
    /// The price of `plan` (`starter` or `pro`).
    pub fn plan(&self, plan: &str) -> Option<&PlanPrice> {
        match plan {
            "starter" => self.starter.as_ref(),
            "pro" => self.pro.as_ref(),
            _ => None,
        }
    }
}

/// A price in dollars and the credits it buys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanPrice {
    /// Dollars per month.
    pub price: f64,
    /// Credits included.
    pub credits: i64,
}
