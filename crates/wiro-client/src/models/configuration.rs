//! An agent's `configuration`: credential groups, custom skills, skills and rate limits.
//!
//! Credential values are secrets (API keys, app passwords). Their `Debug` output lists group and
//! field names only, so they never reach a log line.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `configuration` as Detail, Deploy and Update return it (sanitized by Wiro).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentConfiguration {
    /// Credential groups by name (`instagram`, `gmail`, ...).
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialGroup>,
    /// Skills whose content the owner may customise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_skills: Vec<CustomSkill>,
    /// Skill switches (`{"instagram-post": true}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skills: BTreeMap<String, bool>,
    /// Platform skills; shape undocumented, kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_skills: Option<Value>,
    /// Credit allowance and per-action costs (full Detail only).
    #[serde(rename = "rateLimit", default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// Credits and what each action costs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// The plan's monthly allowance.
    #[serde(
        rename = "monthlyCredits",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub monthly_credits: Option<i64>,
    /// Purchased credits remaining.
    #[serde(
        rename = "extraCredits",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub extra_credits: Option<i64>,
    /// Credits per action type (`message`, `create`, `modify`, `regenerate`).
    #[serde(rename = "actionTypes", default)]
    pub action_types: BTreeMap<String, i64>,
}

/// One credential group: which fields the owner may edit, whether the group is optional, and the
/// field values.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialGroup {
    /// Field name → editable by the owner. Non-editable fields are platform-managed.
    #[serde(rename = "_editable", default)]
    pub editable: BTreeMap<String, bool>,
    /// An optional group need not be filled for the agent to leave Setup Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// Field values (strings, arrays or objects).
    #[serde(flatten)]
    pub fields: BTreeMap<String, Value>,
}

impl CredentialGroup {
    /// Editable fields that are still empty. Only meaningful for non-optional groups.
    pub fn missing_editable_fields(&self) -> Vec<String> {
        self.editable
            .iter()
            .filter(|(_, editable)| **editable)
            .filter(|(name, _)| self.fields.get(*name).is_none_or(is_empty_value))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// True when every field is platform-managed.
    pub fn is_platform_managed(&self) -> bool {
        !self.editable.is_empty() && self.editable.values().all(|e| !e)
    }
}

impl fmt::Debug for CredentialGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialGroup")
            .field("editable", &self.editable)
            .field("optional", &self.optional)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A value counts as empty when it is null, `""`, `[]` or `{}`.
pub fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// A customisable skill.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomSkill {
    /// Stable key, e.g. `content-tone`.
    pub key: String,
    /// What the skill does.
    #[serde(default)]
    pub description: Option<String>,
    /// The skill's content (markdown).
    #[serde(default)]
    pub value: Option<String>,
    /// Whether it is active.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A cron string for scheduled skills.
    #[serde(default)]
    pub interval: Option<String>,
    /// Whether the owner may change it.
    #[serde(rename = "_editable", default)]
    pub editable: Option<bool>,
}

/// Credentials to write with Update: `{group: {field: value}}`. Values are never printed.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialValues(pub BTreeMap<String, BTreeMap<String, Value>>);

impl CredentialValues {
    /// True when no group is given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for CredentialValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: BTreeMap<&String, Vec<&String>> = self
            .0
            .iter()
            .map(|(group, fields)| (group, fields.keys().collect()))
            .collect();
        write!(f, "CredentialValues({names:?}, values redacted)")
    }
}

/// A custom skill change for Update: the key and the new content and/or switch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomSkillValue {
    /// Which skill.
    pub key: String,
    /// New content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// New switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_credential_group_parses_and_reports_missing_fields() {
        let group: CredentialGroup = serde_json::from_str(
            r#"{"_editable":{"authMethod":true},"optional":false,"authMethod":"","igUsername":"","connectedAt":""}"#,
        )
        .unwrap();
        assert_eq!(
            group.missing_editable_fields(),
            vec!["authMethod".to_owned()]
        );
        assert!(!group.is_platform_managed());
    }

    #[test]
    fn debug_never_prints_credential_values() {
        let mut fields = BTreeMap::new();
        fields.insert("apiKey".to_owned(), Value::String("sk-very-secret".into()));
        let values = CredentialValues(BTreeMap::from([("brevo".to_owned(), fields.clone())]));
        let group = CredentialGroup {
            fields,
            ..Default::default()
        };
        for printed in [format!("{values:?}"), format!("{group:?}")] {
            assert!(!printed.contains("sk-very-secret"), "{printed}");
            assert!(printed.contains("apiKey"), "{printed}");
        }
    }
}
