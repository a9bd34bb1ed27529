//! Opaque cursors for keyset pagination, and the page wrapper.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// `?cursor=&limit=` on every list.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

impl PageQuery {
    /// The page size to use.
    ///
    /// # Errors
    /// 400 `bad_query` outside 1–500.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            Some(n) if !(1..=domain::db::MAX_PAGE).contains(&n) => Err(ApiError::bad_query(
                format!("limit: must be 1 to {}", domain::db::MAX_PAGE),
            )),
            requested => Ok(domain::db::page_size(requested, 50)),
        }
    }

    /// The decoded cursor.
    ///
    /// # Errors
    /// 400 for a cursor we did not issue.
    pub fn after<T: std::str::FromStr>(&self) -> Result<Option<T>, ApiError> {
        self.cursor.as_deref().map(decode).transpose()
    }
}

/// A page of items and the cursor of the next page (absent on the last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent when this is the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `items` fetched with `limit`, where `key` gives an item's cursor value.
    pub fn new(items: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Self {
        let next_cursor = (items.len() as i64 == limit)
            .then(|| items.last().map(|last| encode(&key(last))))
            .flatten();
        Self { items, next_cursor }
    }
}

/// Encodes a cursor value.
pub fn encode(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(value)
}

/// Decodes a cursor value.
///
/// # Errors
/// 400 `bad_query`.
pub fn decode<T: std::str::FromStr>(cursor: &str) -> Result<T, ApiError> {
    let bad = || {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "bad_query",
            "cursor: not a cursor this API issued",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    String::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}
