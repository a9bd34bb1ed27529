//! Who is calling: `x-api-key` (plus `x-nonce`/`x-signature` for signature projects) or
//! `Authorization: Bearer KEY` (`KEY:SECRET` for signature projects, as Wiro's MCP server takes
//! it), and the `teamGUID` header. Error strings are Wiro's, typos included.

use hyper::HeaderMap;

use crate::world::instances::Caller;
use crate::world::{SimError, World};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn unauthorized(code: i64, message: &str) -> SimError {
    SimError {
        http: 401,
        code,
        message: message.to_owned(),
    }
}

/// Authenticates a request to a non-public endpoint.
///
/// # Errors
/// Wiro's 401 answers, or "You are not a member of this team" for a foreign `teamGUID`.
pub fn authenticate(world: &World, headers: &HeaderMap) -> Result<Caller, SimError> {
    let account = if let Some(key) = header(headers, "x-api-key") {
        let account = world
            .accounts
            .get(key)
            .ok_or_else(|| unauthorized(0, "Project authorization is not founded."))?;
        if let Some(secret) = &account.api_secret {
            let (Some(nonce), Some(signature)) =
                (header(headers, "x-nonce"), header(headers, "x-signature"))
            else {
                return Err(unauthorized(
                    0,
                    "Project requires signature authentication. x-signature and x-nonce headers are required.",
                ));
            };
            if !wiro_client::signature::verify(key, secret, nonce, signature) {
                return Err(unauthorized(0, "Project authorization is not valid."));
            }
        }
        account
    } else {
        let token = header(headers, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unauthorized(99, "Authorization bearer token is not founded in headers.")
            })?;
        let (key, secret) = match token.split_once(':') {
            Some((key, secret)) => (key, Some(secret)),
            None => (token, None),
        };
        let account = world
            .accounts
            .get(key)
            .ok_or_else(|| unauthorized(99, "Authorization bearer token is invalid."))?;
        if account.api_secret.as_deref() != secret {
            return Err(unauthorized(99, "Authorization bearer token is invalid."));
        }
        account
    };
    let team_header = header(headers, "teamguid").map(str::to_owned);
    if let Some(team) = &team_header
        && !account.teams.contains(team)
    {
        return Err(SimError::refuse("You are not a member of this team"));
    }
    Ok(Caller {
        api_key: account.api_key.clone(),
        uuid: account.uuid.clone(),
        teams: account.teams.clone(),
        team_header,
    })
}
