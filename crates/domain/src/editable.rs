//! What a customer may set on an agent: only the credential fields and custom skills its
//! template marks editable (`_editable` in the catalog's full Detail). Everything else —
//! platform-managed keys such as `openai.apiKey`, names starting with `_` (Wiro's own markers),
//! groups or skills the template does not have — is refused before anything is stored.

use wiro_client::models::AgentConfiguration;

use crate::error::{Error, Result};
use crate::sealed::PendingConfig;

/// Checks `config` against the template's configuration schema. `field` prefixes the path in
/// the error (`items[3]` in a batch, empty for a single order).
///
/// # Errors
/// [`Error::Invalid`] naming the first field that may not be set.
pub fn check(
    schema: Option<&AgentConfiguration>,
    config: &PendingConfig,
    field: &str,
) -> Result<()> {
    let at = |rest: &str| {
        if field.is_empty() {
            rest.to_owned()
        } else {
            format!("{field}.{rest}")
        }
    };
    let empty = AgentConfiguration::default();
    let schema = schema.unwrap_or(&empty);
    for (group, fields) in &config.credentials.0 {
        let Some(declared) = schema.credentials.get(group) else {
            return Err(Error::Invalid(format!(
                "{}: this template has no credential group {group:?}",
                at("credentials")
            )));
        };
        for name in fields.keys() {
            if name.starts_with('_') {
                return Err(Error::Invalid(format!(
                    "{}: names starting with '_' are reserved",
                    at(&format!("credentials.{group}.{name}"))
                )));
            }
            if declared.editable.get(name) != Some(&true) {
                let editable: Vec<&str> = declared
                    .editable
                    .iter()
                    .filter(|(_, e)| **e)
                    .map(|(n, _)| n.as_str())
                    .collect();
                return Err(Error::Invalid(format!(
                    "{}: not an editable field of this template (editable: {})",
                    at(&format!("credentials.{group}.{name}")),
                    if editable.is_empty() {
                        "none".to_owned()
                    } else {
                        editable.join(", ")
                    }
                )));
            }
        }
    }
    for (i, skill) in config.custom_skills.iter().enumerate() {
        match schema.custom_skills.iter().find(|s| s.key == skill.key) {
            None => {
                return Err(Error::Invalid(format!(
                    "{}: this template has no custom skill {:?}",
                    at(&format!("custom_skills[{i}].key")),
                    skill.key
                )));
            }
            Some(declared) if declared.editable == Some(false) => {
                return Err(Error::Invalid(format!(
                    "{}: the custom skill {:?} is not editable",
                    at(&format!("custom_skills[{i}].key")),
                    skill.key
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wiro_client::models::CredentialValues;

    use super::*;

    fn schema() -> AgentConfiguration {
        serde_json::from_value(json!({
            "credentials": {
                "instagram": {"_editable": {"authMethod": true}, "optional": false, "authMethod": ""},
                "openai": {"_editable": {"apiKey": false, "model": false}, "optional": false}
            },
            "custom_skills": [
                {"key": "content-tone", "value": "", "_editable": true},
                {"key": "cron-content-scanner", "value": "", "_editable": false}
            ]
        }))
        .unwrap()
    }

    fn config(credentials: serde_json::Value, skills: &[&str]) -> PendingConfig {
        PendingConfig {
            credentials: CredentialValues(serde_json::from_value(credentials).unwrap()),
            custom_skills: skills
                .iter()
                .map(|k| wiro_client::models::CustomSkillValue {
                    key: (*k).to_owned(),
                    value: Some("x".into()),
                    enabled: None,
                })
                .collect(),
        }
    }

    fn refused(config: &PendingConfig, field: &str) -> String {
        match check(Some(&schema()), config, field) {
            Err(Error::Invalid(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn editable_fields_and_skills_pass() {
        let ok = config(
            json!({"instagram": {"authMethod": "wiro"}}),
            &["content-tone"],
        );
        check(Some(&schema()), &ok, "").unwrap();
    }

    #[test]
    fn a_platform_managed_field_is_refused_by_name() {
        let message = refused(&config(json!({"openai": {"apiKey": "sk-mine"}}), &[]), "");
        assert!(
            message.starts_with("credentials.openai.apiKey: not an editable field"),
            "{message}"
        );
        assert!(message.ends_with("(editable: none)"), "{message}");
    }

    #[test]
    fn an_undeclared_field_or_group_is_refused() {
        let field = refused(
            &config(json!({"instagram": {"igUsername": "me"}}), &[]),
            "items[2]",
        );
        assert!(
            field.starts_with("items[2].credentials.instagram.igUsername:"),
            "{field}"
        );
        assert!(field.contains("(editable: authMethod)"), "{field}");
        let group = refused(&config(json!({"gmail": {"account": "a"}}), &[]), "");
        assert!(group.contains("no credential group \"gmail\""), "{group}");
    }

    #[test]
    fn reserved_names_are_refused() {
        let message = refused(
            &config(json!({"instagram": {"_editable": {"x": true}}}), &[]),
            "",
        );
        assert!(message.contains("reserved"), "{message}");
    }

    #[test]
    fn custom_skills_must_exist_and_be_editable() {
        let unknown = refused(&config(json!({}), &["made-up"]), "");
        assert!(
            unknown.starts_with("custom_skills[0].key: this template has no custom skill"),
            "{unknown}"
        );
        let locked = refused(
            &config(json!({}), &["content-tone", "cron-content-scanner"]),
            "",
        );
        assert!(
            locked.starts_with(
                "custom_skills[1].key: the custom skill \"cron-content-scanner\" is not editable"
            ),
            "{locked}"
        );
    }
}
