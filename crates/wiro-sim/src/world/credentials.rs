//! Credential merge rules from Wiro's docs ("Merge rules, verified against agent-helper.js"):
//! per group; only `_editable: true` fields are written, others silently ignored; groups the
//! template lacks cannot be added; `accounts[]` merges by position (extra entries clone the
//! template shape, fewer entries truncate); other arrays are replaced whole; no format checks.

use serde_json::{Map, Value};

/// Fields Wiro strips from every response (tokens and their expiry are server-side, notes §6.2).
const ALWAYS_HIDDEN: [&str; 6] = [
    "accessToken",
    "refreshToken",
    "clientSecret",
    "appSecret",
    "tokenExpiresAt",
    "refreshTokenExpiresAt",
];
/// The simulator's own bookkeeping inside a group (connection facts Status shows): never
/// rendered, never editable.
pub const INTERNAL_PREFIX: &str = "_sim_";
/// Non-editable fields holding platform secrets, also hidden.
const PLATFORM_SECRETS: [&str; 1] = ["apiKey"];

/// Merges `incoming` (`{group: {field: value}}`) into `current`, using `template` for the
/// shape of new `accounts[]` entries.
pub fn merge(current: &mut Map<String, Value>, template: &Map<String, Value>, incoming: &Value) {
    let Some(incoming) = incoming.as_object() else {
        return;
    };
    for (group_name, fields) in incoming {
        let (Some(group), Some(fields)) = (
            current.get_mut(group_name).and_then(Value::as_object_mut),
            fields.as_object(),
        ) else {
            continue; // unknown group, or not an object: cannot be added
        };
        let editable = editable_map(group);
        for (field, value) in fields {
            if !editable.get(field).copied().unwrap_or(false) {
                continue; // non-editable or unknown field: silently ignored
            }
            if field == "accounts" {
                let template_entry = template
                    .get(group_name)
                    .and_then(|g| g.get("accounts"))
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .cloned()
                    .unwrap_or(Value::Object(Map::new()));
                let merged = merge_accounts(group.get("accounts"), &template_entry, value);
                group.insert(field.clone(), merged);
            } else {
                group.insert(field.clone(), value.clone());
            }
        }
    }
}

fn editable_map(group: &Map<String, Value>) -> std::collections::HashMap<String, bool> {
    group
        .get("_editable")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_bool().unwrap_or(false)))
                .collect()
        })
        .unwrap_or_default()
}

/// `accounts[]` by position: entry i merges into current entry i (or a copy of the template's
/// first entry); the result has exactly as many entries as sent.
fn merge_accounts(current: Option<&Value>, template_entry: &Value, incoming: &Value) -> Value {
    let Some(incoming) = incoming.as_array() else {
        return incoming.clone();
    };
    let current = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let merged = incoming
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let mut base = current
                .get(i)
                .cloned()
                .unwrap_or_else(|| template_entry.clone());
            if let (Some(base_obj), Some(entry_obj)) = (base.as_object_mut(), entry.as_object()) {
                for (k, v) in entry_obj {
                    base_obj.insert(k.clone(), v.clone());
                }
            } else {
                base = entry.clone();
            }
            base
        })
        .collect();
    Value::Array(merged)
}

/// Editable fields still empty in non-optional groups, as `group.field`.
pub fn missing_required(credentials: &Map<String, Value>) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, group) in credentials {
        let Some(group) = group.as_object() else {
            continue;
        };
        if group
            .get("optional")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            continue;
        }
        // An OAuth group's own-app fields are needed only in own mode ([INFERRED]).
        let own = group.get("authMethod").and_then(Value::as_str) == Some("own");
        let app_fields = super::oauth::by_group(name).map_or(&[][..], |p| p.app_fields);
        for (field, editable) in editable_map(group) {
            if app_fields.contains(&field.as_str()) && !own {
                continue;
            }
            if editable && group.get(&field).is_none_or(is_empty) {
                missing.push(format!("{name}.{field}"));
            }
        }
    }
    missing.sort();
    missing
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// What responses show: secrets removed (tokens and app secrets always, platform API keys when
/// not editable).
pub fn sanitize(credentials: &Map<String, Value>) -> Map<String, Value> {
    credentials
        .iter()
        .map(|(name, group)| {
            let Some(group) = group.as_object() else {
                return (name.clone(), group.clone());
            };
            let editable = editable_map(group);
            let cleaned: Map<String, Value> = group
                .iter()
                .filter(|(field, _)| !ALWAYS_HIDDEN.contains(&field.as_str()))
                .filter(|(field, _)| !field.starts_with(INTERNAL_PREFIX))
                .filter(|(field, _)| {
                    !PLATFORM_SECRETS.contains(&field.as_str())
                        || editable.get(*field).copied().unwrap_or(false)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (name.clone(), Value::Object(cleaned))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Map<String, Value> {
        json!({
            "instagram": {"_editable": {"authMethod": true}, "optional": false,
                           "authMethod": "", "igUsername": "", "connectedAt": ""},
            "openai": {"_editable": {"apiKey": false, "model": false}, "optional": false,
                        "apiKey": "sk-secret", "model": "m"},
            "firebase": {"_editable": {"accounts": true}, "optional": true,
                          "accounts": [{"appName": "", "apps": []}]},
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn only_editable_fields_of_known_groups_are_written() {
        let template = schema();
        let mut current = schema();
        merge(
            &mut current,
            &template,
            &json!({"instagram": {"authMethod": "wiro", "igUsername": "hacked"},
                    "openai": {"model": "cheap"},
                    "newgroup": {"x": "y"}}),
        );
        assert_eq!(current["instagram"]["authMethod"], "wiro");
        assert_eq!(current["instagram"]["igUsername"], "");
        assert_eq!(current["openai"]["model"], "m");
        assert!(!current.contains_key("newgroup"));
        assert!(missing_required(&current).is_empty());
    }

    #[test]
    fn accounts_merge_by_position_and_truncate() {
        let template = schema();
        let mut current = schema();
        merge(
            &mut current,
            &template,
            &json!({"firebase": {"accounts": [{"appName": "a"}, {"appName": "b"}]}}),
        );
        let accounts = current["firebase"]["accounts"].as_array().unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[1], json!({"appName": "b", "apps": []}));
        merge(
            &mut current,
            &template,
            &json!({"firebase": {"accounts": [{"appName": "z"}]}}),
        );
        assert_eq!(current["firebase"]["accounts"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn missing_lists_empty_editable_fields_of_required_groups_only() {
        assert_eq!(missing_required(&schema()), vec!["instagram.authMethod"]);
    }

    #[test]
    fn sanitize_hides_platform_keys_and_tokens() {
        let mut creds = schema();
        creds["instagram"]["accessToken"] = json!("tok");
        let clean = sanitize(&creds);
        assert!(clean["openai"].get("apiKey").is_none());
        assert!(clean["instagram"].get("accessToken").is_none());
        assert_eq!(clean["openai"]["model"], "m");
    }
}
