//! The error strings Wiro returns in `{result:false, errors:[...]}`, each as its own variant.
//!
//! Strings are matched exactly as documented (including Wiro's "founded" typos); numbers inside
//! them are parsed. A string we do not know is kept whole in [`WiroError::Other`].

use std::fmt;

/// One error reported by Wiro.
#[derive(Clone, Debug, PartialEq)]
pub enum WiroError {
    /// `Agent not found`: the template guid/slug does not exist (or a team-scoped miss).
    AgentNotFound,
    /// `User agent not found`: the instance guid is not one of ours.
    UserAgentNotFound,
    /// `Agent not found or inactive`: the template exists but is disabled.
    AgentNotFoundOrInactive,
    /// `Active subscription required to start agent. Please renew your subscription.`
    SubscriptionRequiredToStart,
    /// `Agent setup is not complete. Please fill in your credentials before starting.`
    SetupIncomplete,
    /// `Agent is already running` (status 3 or 4).
    AlreadyRunning,
    /// `Agent is already queued to start` (status 2).
    AlreadyQueued,
    /// `Agent is already stopped` (status 0).
    AlreadyStopped,
    /// `Agent is currently stopping, please wait` (status 1).
    CurrentlyStopping,
    /// `Agent is in error state, use Start to retry` (Stop on status 5).
    InErrorState,
    /// `No credits available. Please renew your subscription or purchase extra credits.`
    NoCreditsAvailable,
    /// `Extra credits are available only for Pro plan subscribers. Please upgrade your plan.`
    ExtraCreditsProOnly,
    /// `Invalid pack. Choose package1, package2, or package3.`
    InvalidPack,
    /// `Active subscription required to purchase extra credits.`
    SubscriptionRequiredForExtraCredits,
    /// `Extra credit pack not available for this agent.`
    PackNotAvailable,
    /// `Categories cannot be empty`
    CategoriesEmpty,
    /// `Agent not found or access denied` (messaging with a bad instance guid).
    AgentNotFoundOrAccessDenied,
    /// `Agent is not running. Current status: {n}`
    AgentNotRunning {
        /// The instance's status when the message was refused.
        status: i64,
    },
    /// `Message not found`
    MessageNotFound,
    /// `Message cannot be cancelled (status: {status})`
    MessageNotCancellable {
        /// The message's status, e.g. `agent_end`.
        status: String,
    },
    /// `Invalid redirect URL` (OAuth connect with a non-HTTPS URL).
    InvalidRedirectUrl,
    /// `User agent not found or unauthorized` (OAuth calls with a bad instance guid).
    UserAgentNotFoundOrUnauthorized,
    /// `Missing userAgentGuid`
    MissingUserAgentGuid,
    /// `Missing redirectUrl`
    MissingRedirectUrl,
    /// `<Provider> credentials not configured` (own mode without the app's credentials).
    CredentialsNotConfigured {
        /// The provider as Wiro names it, e.g. `Meta Ads`.
        provider: String,
    },
    /// `No pending Facebook connection` (FBSetPage without a recent callback).
    NoPendingFacebookConnection,
    /// `Selected pageId not found in pending pages list`
    PageNotPending,
    /// `Maximum 5 folders allowed`
    TooManyFolders,
    /// `Invalid provider` (TokenRefresh for Mailchimp or an unknown provider).
    InvalidProvider,
    /// `Subscription is already active` (Renew with nothing to renew or undo).
    SubscriptionAlreadyActive,
    /// `No expired subscription found to renew`
    NoExpiredSubscription,
    /// `Insufficient wallet balance. Required: $X, Available: $Y`
    InsufficientWalletBalance {
        /// Dollars the operation needed.
        required: f64,
        /// Dollars in the wallet.
        available: f64,
    },
    /// `Cannot downgrade from Pro to Starter. Cancel your subscription instead.`
    CannotDowngrade,
    /// `Stripe subscriptions must be cancelled via Stripe portal`
    StripeCancelViaPortal,
    /// `Valid plan required when using prepaid (starter or pro)`
    ValidPlanRequired,
    /// `Pricing not available for this plan`
    PricingNotAvailable,
    /// `Renewal pricing not available`
    RenewalPricingNotAvailable,
    /// `You are not a member of this team`
    NotTeamMember,
    /// `This agent belongs to a team. Switch to the team context to access it.`
    AgentBelongsToTeam,
    /// `This agent is personal. Switch to your personal context to access it.`
    AgentIsPersonal,
    /// `Project authorization is not founded.` (unknown API key)
    UnknownApiKey,
    /// `Project requires signature authentication. x-signature and x-nonce headers are required.`
    SignatureRequired,
    /// `Project authorization is not valid.` (bad signature)
    InvalidSignature,
    /// `Requested ip {ip} is not allowed.`
    IpNotAllowed {
        /// The caller's address as Wiro saw it.
        ip: String,
    },
    /// `Authorization bearer token is not founded in headers.`
    BearerMissing,
    /// `Authorization bearer token is invalid.`
    BearerInvalid,
    /// `Authorization bearer token expired.`
    BearerExpired,
    /// `Error parsing url.` (unknown endpoint)
    UnknownEndpoint,
    /// Any other message, kept verbatim with its code.
    Other {
        /// Wiro's numeric code, when it sent one.
        code: Option<i64>,
        /// The message exactly as received.
        message: String,
    },
}

/// Messages that map to a variant without parameters.
const FIXED: &[(&str, WiroError)] = &[
    ("Agent not found", WiroError::AgentNotFound),
    ("User agent not found", WiroError::UserAgentNotFound),
    (
        "Agent not found or inactive",
        WiroError::AgentNotFoundOrInactive,
    ),
    (
        "Active subscription required to start agent. Please renew your subscription.",
        WiroError::SubscriptionRequiredToStart,
    ),
    (
        "Agent setup is not complete. Please fill in your credentials before starting.",
        WiroError::SetupIncomplete,
    ),
    ("Agent is already running", WiroError::AlreadyRunning),
    ("Agent is already queued to start", WiroError::AlreadyQueued),
    ("Agent is already stopped", WiroError::AlreadyStopped),
    (
        "Agent is currently stopping, please wait",
        WiroError::CurrentlyStopping,
    ),
    (
        "Agent is in error state, use Start to retry",
        WiroError::InErrorState,
    ),
    (
        "No credits available. Please renew your subscription or purchase extra credits.",
        WiroError::NoCreditsAvailable,
    ),
    (
        "Extra credits are available only for Pro plan subscribers. Please upgrade your plan.",
        WiroError::ExtraCreditsProOnly,
    ),
    (
        "Invalid pack. Choose package1, package2, or package3.",
        WiroError::InvalidPack,
    ),
    (
        "Active subscription required to purchase extra credits.",
        WiroError::SubscriptionRequiredForExtraCredits,
    ),
    (
        "Extra credit pack not available for this agent.",
        WiroError::PackNotAvailable,
    ),
    ("Categories cannot be empty", WiroError::CategoriesEmpty),
    (
        "Agent not found or access denied",
        WiroError::AgentNotFoundOrAccessDenied,
    ),
    ("Message not found", WiroError::MessageNotFound),
    ("Invalid redirect URL", WiroError::InvalidRedirectUrl),
    (
        "Subscription is already active",
        WiroError::SubscriptionAlreadyActive,
    ),
    (
        "No expired subscription found to renew",
        WiroError::NoExpiredSubscription,
    ),
    (
        "Cannot downgrade from Pro to Starter. Cancel your subscription instead.",
        WiroError::CannotDowngrade,
    ),
    (
        "Stripe subscriptions must be cancelled via Stripe portal",
        WiroError::StripeCancelViaPortal,
    ),
    (
        "Valid plan required when using prepaid (starter or pro)",
        WiroError::ValidPlanRequired,
    ),
    (
        "Pricing not available for this plan",
        WiroError::PricingNotAvailable,
    ),
    (
        "Renewal pricing not available",
        WiroError::RenewalPricingNotAvailable,
    ),
    (
        "You are not a member of this team",
        WiroError::NotTeamMember,
    ),
    (
        "This agent belongs to a team. Switch to the team context to access it.",
        WiroError::AgentBelongsToTeam,
    ),
    (
        "This agent is personal. Switch to your personal context to access it.",
        WiroError::AgentIsPersonal,
    ),
    (
        "Project authorization is not founded.",
        WiroError::UnknownApiKey,
    ),
    (
        "Project requires signature authentication. x-signature and x-nonce headers are required.",
        WiroError::SignatureRequired,
    ),
    (
        "Project authorization is not valid.",
        WiroError::InvalidSignature,
    ),
    (
        "Authorization bearer token is not founded in headers.",
        WiroError::BearerMissing,
    ),
    (
        "Authorization bearer token is invalid.",
        WiroError::BearerInvalid,
    ),
    (
        "Authorization bearer token expired.",
        WiroError::BearerExpired,
    ),
    ("Error parsing url.", WiroError::UnknownEndpoint),
    (
        "User agent not found or unauthorized",
        WiroError::UserAgentNotFoundOrUnauthorized,
    ),
    ("Missing userAgentGuid", WiroError::MissingUserAgentGuid),
    ("Missing redirectUrl", WiroError::MissingRedirectUrl),
    (
        "No pending Facebook connection",
        WiroError::NoPendingFacebookConnection,
    ),
    (
        "Selected pageId not found in pending pages list",
        WiroError::PageNotPending,
    ),
    ("Maximum 5 folders allowed", WiroError::TooManyFolders),
    ("Invalid provider", WiroError::InvalidProvider),
];

impl WiroError {
    /// Classifies one upstream message. Never fails: unknown text becomes [`WiroError::Other`].
    pub fn parse(code: Option<i64>, message: &str) -> Self {
        let trimmed = message.trim();
        if let Some((_, err)) = FIXED.iter().find(|(text, _)| *text == trimmed) {
            return err.clone();
        }
        if let Some(rest) = trimmed.strip_prefix("Agent is not running. Current status: ")
            && let Ok(status) = rest.trim().parse()
        {
            return WiroError::AgentNotRunning { status };
        }
        if let Some(rest) = trimmed.strip_prefix("Message cannot be cancelled (status: ")
            && let Some(status) = rest.strip_suffix(')')
        {
            return WiroError::MessageNotCancellable {
                status: status.trim().to_owned(),
            };
        }
        if let Some(err) = parse_wallet(trimmed) {
            return err;
        }
        if let Some(provider) = trimmed.strip_suffix(" credentials not configured") {
            return WiroError::CredentialsNotConfigured {
                provider: provider.to_owned(),
            };
        }
        if let Some(rest) = trimmed.strip_prefix("Requested ip ")
            && let Some(ip) = rest.strip_suffix(" is not allowed.")
        {
            return WiroError::IpNotAllowed { ip: ip.to_owned() };
        }
        WiroError::Other {
            code,
            message: message.to_owned(),
        }
    }

    /// The message as Wiro words it (the inverse of [`WiroError::parse`]).
    pub fn message(&self) -> String {
        if let Some((text, _)) = FIXED.iter().find(|(_, err)| err == self) {
            return (*text).to_owned();
        }
        match self {
            WiroError::AgentNotRunning { status } => {
                format!("Agent is not running. Current status: {status}")
            }
            WiroError::MessageNotCancellable { status } => {
                format!("Message cannot be cancelled (status: {status})")
            }
            WiroError::InsufficientWalletBalance {
                required,
                available,
            } => format!(
                "Insufficient wallet balance. Required: ${}, Available: ${}",
                format_dollars(*required),
                format_dollars(*available)
            ),
            WiroError::IpNotAllowed { ip } => format!("Requested ip {ip} is not allowed."),
            WiroError::CredentialsNotConfigured { provider } => {
                format!("{provider} credentials not configured")
            }
            WiroError::Other { message, .. } => message.clone(),
            _ => unreachable!("every parameterless variant is in FIXED"),
        }
    }

    /// True for errors that say our credentials or team header are wrong: retrying cannot help
    /// and an operator must act.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            WiroError::UnknownApiKey
                | WiroError::SignatureRequired
                | WiroError::InvalidSignature
                | WiroError::IpNotAllowed { .. }
                | WiroError::BearerMissing
                | WiroError::BearerInvalid
                | WiroError::BearerExpired
                | WiroError::NotTeamMember
                | WiroError::AgentBelongsToTeam
                | WiroError::AgentIsPersonal
        )
    }
}

impl fmt::Display for WiroError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Dollars as Wiro prints them: no decimals for whole amounts, two otherwise.
pub fn format_dollars(amount: f64) -> String {
    if (amount.fract()).abs() < f64::EPSILON {
        format!("{amount:.0}")
    } else {
        format!("{amount:.2}")
    }
}

fn parse_wallet(message: &str) -> Option<WiroError> {
    let rest = message.strip_prefix("Insufficient wallet balance. Required: $")?;
    let (required, available) = rest.split_once(", Available: $")?;
    Some(WiroError::InsufficientWalletBalance {
        required: required.trim().parse().ok()?,
        available: available.trim().trim_end_matches('.').parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_message_round_trips() {
        for (text, err) in FIXED {
            assert_eq!(&WiroError::parse(Some(0), text), err, "{text}");
            assert_eq!(err.message(), *text);
        }
    }

    #[test]
    fn wallet_amounts_are_parsed() {
        let err = WiroError::parse(
            None,
            "Insufficient wallet balance. Required: $29, Available: $11.33",
        );
        assert_eq!(
            err,
            WiroError::InsufficientWalletBalance {
                required: 29.0,
                available: 11.33
            }
        );
        assert_eq!(
            err.message(),
            "Insufficient wallet balance. Required: $29, Available: $11.33"
        );
    }

    #[test]
    fn status_numbers_and_names_are_parsed() {
        assert_eq!(
            WiroError::parse(None, "Agent is not running. Current status: 0"),
            WiroError::AgentNotRunning { status: 0 }
        );
        assert_eq!(
            WiroError::parse(None, "Message cannot be cancelled (status: agent_end)"),
            WiroError::MessageNotCancellable {
                status: "agent_end".into()
            }
        );
        assert_eq!(
            WiroError::parse(None, "Requested ip 10.0.0.1 is not allowed."),
            WiroError::IpNotAllowed {
                ip: "10.0.0.1".into()
            }
        );
        let own = WiroError::parse(None, "Meta Ads credentials not configured");
        assert_eq!(
            own,
            WiroError::CredentialsNotConfigured {
                provider: "Meta Ads".into()
            }
        );
        assert_eq!(own.message(), "Meta Ads credentials not configured");
    }

    #[test]
    fn unknown_messages_are_kept_verbatim() {
        let err = WiroError::parse(Some(7), "Something new happened");
        assert_eq!(
            err,
            WiroError::Other {
                code: Some(7),
                message: "Something new happened".into()
            }
        );
        assert_eq!(err.to_string(), "Something new happened");
    }

    #[test]
    fn a_malformed_wallet_message_is_not_guessed_at() {
        let err = WiroError::parse(
            None,
            "Insufficient wallet balance. Required: $abc, Available: $1",
        );
        assert!(matches!(err, WiroError::Other { .. }));
    }
}
