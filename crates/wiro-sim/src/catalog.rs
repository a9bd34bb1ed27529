//! The template catalog: loaded from a JSON file (the default one is compiled in) and rendered
//! the way `Agent/List` and `Agent/Detail` show it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The catalog shipped with the simulator (`data/catalog.json`).
pub const DEFAULT_CATALOG: &str = include_str!("../data/catalog.json");

/// A price and the credits it buys.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Price {
    /// Dollars.
    pub price: f64,
    /// Credits.
    pub credits: i64,
}

/// A template's pricing: plans and extra-credit packs.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pricing {
    /// Starter plan.
    pub starter: Option<Price>,
    /// Pro plan.
    pub pro: Option<Price>,
    /// Packs by name.
    #[serde(default)]
    pub extracredits: BTreeMap<String, Price>,
}

impl Pricing {
    /// The price of `plan`.
    pub fn plan(&self, plan: &str) -> Option<Price> {
        match plan {
            "starter" => self.starter,
            "pro" => self.pro,
            _ => None,
        }
    }

    fn to_json(&self, with_packs: bool) -> Value {
        let mut out = Map::new();
        for (name, price) in [("starter", self.starter), ("pro", self.pro)] {
            if let Some(p) = price {
                out.insert(name.into(), json!({"price": p.price, "credits": p.credits}));
            }
        }
        if with_packs && !self.extracredits.is_empty() {
            let packs: Map<String, Value> = self
                .extracredits
                .iter()
                .map(|(k, p)| (k.clone(), json!({"price": p.price, "credits": p.credits})))
                .collect();
            out.insert("extracredits".into(), Value::Object(packs));
        }
        Value::Object(out)
    }
}

/// One catalog template.
#[derive(Clone, Debug, Deserialize)]
pub struct Template {
    /// Numeric id.
    pub id: i64,
    /// Guid used by Deploy.
    pub guid: String,
    /// Display name.
    pub title: String,
    /// URL name.
    pub slug: String,
    /// 1 = active, 0 = disabled.
    pub status: i64,
    /// Categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Render fields the docs do not show (the packs' prices): off unless the simulator was
    /// asked for them.
    #[serde(skip)]
    pub undocumented_fields: bool,
    /// Prices.
    #[serde(default)]
    pub pricing: Pricing,
    /// The full configuration tree: credentials, custom_skills, skills, agent_skills, rateLimit.
    #[serde(default)]
    pub configuration: Map<String, Value>,
    /// Every other field, shown as is (headline, description, cover, samples, skills, dates...).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl Template {
    /// Credential groups of the template (the schema new instances start from).
    pub fn credentials(&self) -> Map<String, Value> {
        self.configuration
            .get("credentials")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// Custom skills of the template.
    pub fn custom_skills(&self) -> Vec<Value> {
        self.configuration
            .get("custom_skills")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// Skill switches of the template.
    pub fn skills(&self) -> Value {
        self.configuration
            .get("skills")
            .cloned()
            .unwrap_or(json!({}))
    }

    /// Credits one action of `kind` costs (0 when the template does not price it).
    pub fn action_cost(&self, kind: &str) -> i64 {
        self.action_types()
            .get(kind)
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// `rateLimit.actionTypes`.
    pub fn action_types(&self) -> Map<String, Value> {
        self.configuration
            .get("rateLimit")
            .and_then(|r| r.get("actionTypes"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `Agent/List` shows it and Deploy accepts it.
    pub fn is_active(&self) -> bool {
        self.status == 1
    }

    /// The row `Agent/List` returns.
    pub fn list_json(&self) -> Value {
        let mut out = self.base_json();
        out.remove("totalrun");
        out.remove("activerun");
        Value::Object(out)
    }

    /// The row `Agent/Detail` returns: trimmed configuration (credentials, sanitized) unless
    /// `full`, and the lowercase `ratelimit.actionTypes`.
    pub fn detail_json(&self, full: bool) -> Value {
        let mut out = self.base_json();
        out.remove("totalrun");
        out.remove("activerun");
        out.insert(
            "ratelimit".into(),
            json!({"actionTypes": Value::Object(self.action_types())}),
        );
        let credentials = crate::world::credentials::sanitize(&self.credentials());
        let configuration = if full {
            let mut config = self.configuration.clone();
            config.insert("credentials".into(), Value::Object(credentials));
            Value::Object(config)
        } else {
            json!({"credentials": credentials})
        };
        out.insert("configuration".into(), configuration);
        Value::Object(out)
    }

    /// The `agent` summary nested in instances.
    pub fn summary_json(&self, with_cover: bool) -> Value {
        let mut out = json!({
            "id": self.id,
            "title": self.title,
            "slug": self.slug,
            "pricing": self.pricing.to_json(false),
        });
        if with_cover {
            out["cover"] = self.rest.get("cover").cloned().unwrap_or(Value::Null);
            out["categories"] = json!(self.categories);
        }
        out
    }

    fn base_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("guid".into(), json!(self.guid));
        out.insert("title".into(), json!(self.title));
        out.insert("slug".into(), json!(self.slug));
        for (k, v) in &self.rest {
            out.insert(k.clone(), v.clone());
        }
        out.insert("categories".into(), json!(self.categories));
        // Wiro documents no field carrying the packs' prices; they stay inside unless asked for.
        out.insert(
            "pricing".into(),
            self.pricing.to_json(self.undocumented_fields),
        );
        out.insert("status".into(), json!(self.status));
        out
    }

    /// A numeric field of `rest` (for sorting by `totalrun`, `createdat`...).
    pub fn sort_key(&self, column: &str) -> SortKey {
        match column {
            "title" => SortKey::Text(self.title.to_lowercase()),
            "slug" => SortKey::Text(self.slug.clone()),
            "status" => SortKey::Num(self.status),
            "createdat" | "updatedat" | "totalrun" | "activerun" => {
                let v = self.rest.get(column);
                let n = v
                    .and_then(Value::as_i64)
                    .or_else(|| v.and_then(Value::as_str).and_then(|s| s.parse().ok()))
                    .unwrap_or(0);
                SortKey::Num(n)
            }
            _ => SortKey::Num(self.id),
        }
    }
}

/// A comparable sort value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    /// Numbers.
    Num(i64),
    /// Text.
    Text(String),
}

/// All templates.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// Templates in file order.
    pub templates: Vec<Template>,
}

impl Catalog {
    /// The compiled-in default catalog.
    pub fn default_catalog() -> Self {
        Self::parse(DEFAULT_CATALOG)
            .unwrap_or_else(|e| panic!("data/catalog.json is invalid: {e:#}"))
    }

    /// Reads a catalog file (a JSON array of templates).
    ///
    /// # Errors
    /// When the file cannot be read or a template is malformed; the message names the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read catalog file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid catalog file {}", path.display()))
    }

    /// Parses catalog JSON and checks ids, guids and slugs are unique.
    ///
    /// # Errors
    /// When the JSON does not describe templates or has duplicates.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let templates: Vec<Template> = serde_json::from_str(text)?;
        let mut seen = std::collections::HashSet::new();
        for t in &templates {
            for key in [
                format!("id {}", t.id),
                format!("guid {}", t.guid),
                format!("slug {}", t.slug),
            ] {
                if !seen.insert(key.clone()) {
                    bail!("two templates share {key}");
                }
            }
        }
        Ok(Self { templates })
    }

    /// Whether to render fields the docs do not show.
    pub fn set_undocumented_fields(&mut self, on: bool) {
        for t in &mut self.templates {
            t.undocumented_fields = on;
        }
    }

    /// By guid.
    pub fn by_guid(&self, guid: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.guid == guid)
    }

    /// By slug.
    pub fn by_slug(&self, slug: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.slug == slug)
    }

    /// By numeric id.
    pub fn by_id(&self, id: i64) -> Option<&Template> {
        self.templates.iter().find(|t| t.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_catalog_has_the_seed_template_and_more() {
        let catalog = Catalog::default_catalog();
        let seed = catalog
            .by_guid("a1b2c3d4-e5f6-7890-abcd-ef1234567890")
            .unwrap();
        assert_eq!(seed.slug, "instagram-manager");
        assert_eq!(seed.pricing.plan("starter").unwrap().price, 9.0);
        assert_eq!(seed.pricing.plan("pro").unwrap().credits, 5000);
        assert_eq!(seed.action_cost("message"), 10);
        assert!(catalog.templates.len() >= 6);
    }

    #[test]
    fn duplicate_slugs_are_rejected() {
        let one = r#"{"id":1,"guid":"g1","title":"a","slug":"s","status":1}"#;
        let two = r#"{"id":2,"guid":"g2","title":"b","slug":"s","status":1}"#;
        let err = Catalog::parse(&format!("[{one},{two}]")).unwrap_err();
        assert!(err.to_string().contains("slug s"), "{err}");
    }
}
