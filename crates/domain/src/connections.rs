//! OAuth connections of an agent's credential groups (Instagram, X, Google Drive...): which
//! provider a path names, which modes it offers, and where the customer's browser may be sent
//! back to. Wiro redirects the browser straight to the URL we pass, so the reseller must never
//! become an open redirect: only origins the operator lists are accepted.

use wiro_client::models::OAuthProvider;

use crate::error::{Error, Result};

/// How a connection authenticates with the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// Wiro's own app.
    Wiro,
    /// The customer's app (its id and secret saved first as credentials).
    Own,
}

impl AuthMethod {
    /// As Wiro spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Wiro => "wiro",
            AuthMethod::Own => "own",
        }
    }

    /// `wiro` or `own`; absent: Wiro's app where it exists, else own.
    ///
    /// # Errors
    /// [`Error::Invalid`] for another word, or `wiro` on a provider without Wiro's app.
    pub fn choose(provider: OAuthProvider, asked: Option<&str>) -> Result<Self> {
        let method = match asked {
            None if provider.own_only() => AuthMethod::Own,
            None | Some("wiro") => AuthMethod::Wiro,
            Some("own") => AuthMethod::Own,
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "auth_method: {other:?} is neither \"wiro\" nor \"own\""
                )));
            }
        };
        if method == AuthMethod::Wiro && provider.own_only() {
            return Err(Error::Invalid(format!(
                "auth_method: {} connects only with your own app (\"own\"); Wiro's app is not available for it",
                provider.group()
            )));
        }
        Ok(method)
    }
}

/// The provider a path segment names: the credential group (`instagram`, `googledrive`).
///
/// # Errors
/// [`Error::NotFound`] for anything else.
pub fn provider(group: &str) -> Result<OAuthProvider> {
    OAuthProvider::from_group(group).ok_or(Error::NotFound("connection provider"))
}

/// One allowed origin: `scheme://host[:port]`, or `:*` for any port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    /// `None`: any port.
    port: Option<u16>,
}

fn loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1")
}

/// The origins a redirect URL may point to (`connections.allowed_redirect_origins`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedirectOrigins(Vec<Origin>);

impl RedirectOrigins {
    /// Parses the configured list.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the entry that is not `scheme://host[:port|:*]`, or an `http`
    /// origin other than localhost / 127.0.0.1.
    pub fn parse(list: &[String]) -> Result<Self> {
        list.iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_origin(entry).map_err(|why| {
                    Error::Invalid(format!(
                        "connections.allowed_redirect_origins[{i}] {entry:?}: {why}"
                    ))
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Checks `redirect_url` against the list.
    ///
    /// # Errors
    /// [`Error::Invalid`] saying why the URL is refused.
    pub fn check(&self, redirect_url: &str) -> Result<()> {
        let refuse = |why: &str| Err(Error::Invalid(format!("redirect_url: {why}")));
        let Ok(url) = url::Url::parse(redirect_url) else {
            return refuse("not an absolute URL");
        };
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return refuse("has no host");
        };
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("must not carry a user name or password");
        }
        match url.scheme() {
            "https" => {}
            "http" if loopback(&host) => {}
            _ => return refuse("must be https (http only for localhost and 127.0.0.1)"),
        }
        let port = url.port_or_known_default();
        let allowed = self.0.iter().any(|o| {
            o.scheme == url.scheme() && o.host == host && o.port.is_none_or(|p| Some(p) == port)
        });
        if allowed {
            Ok(())
        } else {
            refuse(
                "its origin is not one of connections.allowed_redirect_origins; ask the operator to add it",
            )
        }
    }
}

fn parse_origin(entry: &str) -> std::result::Result<Origin, String> {
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or("expected scheme://host[:port]")?;
    if scheme != "https" && scheme != "http" {
        return Err("the scheme must be https or http".into());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, "*")) => (host, None),
        Some((host, port)) => (
            host,
            Some(
                port.parse::<u16>()
                    .map_err(|_| format!("{port:?} is not a port (or *)"))?,
            ),
        ),
        None => (rest, Some(if scheme == "https" { 443 } else { 80 })),
    };
    if host.is_empty() || host.contains(['/', '?', '#', '@']) {
        return Err("expected scheme://host[:port] with nothing after the host".into());
    }
    let host = host.to_ascii_lowercase();
    if scheme == "http" && !loopback(&host) {
        return Err("http is allowed only for localhost and 127.0.0.1".into());
    }
    Ok(Origin {
        scheme: scheme.to_owned(),
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> RedirectOrigins {
        RedirectOrigins::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let allowed = origins(&["https://app.example.com", "http://localhost:*"]);
        assert!(
            allowed
                .check("https://app.example.com/oauth/done?x=1")
                .is_ok()
        );
        assert!(allowed.check("https://APP.example.com:443/back").is_ok());
        assert!(allowed.check("http://localhost:3000/back").is_ok());
        for refused in [
            "https://evil.example.com/back",
            "https://app.example.com:8443/back",
            "http://app.example.com/back",
            "https://user:pw@app.example.com/back",
            "javascript:alert(1)",
            "/relative",
            "http://127.0.0.1:3000/back",
        ] {
            assert!(allowed.check(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_bad_origin_is_named_in_the_error() {
        for bad in [
            "app.example.com",
            "ftp://x",
            "http://app.example.com",
            "https://x:port",
            "https://x/path",
        ] {
            let err = RedirectOrigins::parse(&["https://ok.example".into(), bad.into()])
                .unwrap_err()
                .to_string();
            assert!(err.contains("allowed_redirect_origins[1]"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_mode_defaults_to_what_the_provider_offers() {
        assert_eq!(
            AuthMethod::choose(OAuthProvider::Instagram, None).unwrap(),
            AuthMethod::Own
        );
        assert_eq!(
            AuthMethod::choose(OAuthProvider::X, None).unwrap(),
            AuthMethod::Wiro
        );
        assert!(AuthMethod::choose(OAuthProvider::Instagram, Some("wiro")).is_err());
        assert!(AuthMethod::choose(OAuthProvider::X, Some("magic")).is_err());
    }
}
