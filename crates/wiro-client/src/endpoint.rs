//! Every Wiro endpoint we call, with its path and how safe it is to repeat.

use std::fmt;

/// How a call may be repeated after a failure whose outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Safety {
    /// Reads only: retried with backoff on any transient failure.
    ReadOnly,
    /// Changes state, but repeating it converges (Start, Stop, Update, Cancel...). Retried only
    /// when the failure proves the call was not applied (connect error, 429).
    Idempotent,
    /// Spends money or creates something (Deploy, UpgradePlan, RenewSubscription,
    /// CreateExtraCreditCheckout, Message/Send). Attempted exactly once; the caller decides.
    Spending,
}

/// One Wiro endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    AgentList,
    AgentDetail,
    Deploy,
    MyAgents,
    Detail,
    Update,
    Start,
    Stop,
    CreateExtraCreditCheckout,
    CancelSubscription,
    UpgradePlan,
    RenewSubscription,
    MessageSend,
    MessageDetail,
    MessageHistory,
    MessageSessions,
    MessageCancel,
    MessageDeleteSession,
    /// `UserAgentOAuth/{Provider}Connect`; the provider goes in the path.
    OAuthConnect,
    /// `UserAgentOAuth/{Provider}Status` (and the Drive folder listing): reads.
    OAuthStatus,
    /// `UserAgentOAuth/{Provider}Disconnect`.
    OAuthDisconnect,
    /// `UserAgentOAuth/TokenRefresh`.
    OAuthTokenRefresh,
    /// The calls that finish a connection: `MetaAdsSetAdAccount`, `FBSetPage`,
    /// `GAdsSetCustomerId`, `GoogleDriveSetFolder`.
    OAuthFinalize,
}

impl Endpoint {
    /// Every endpoint, for metrics and conformance tests.
    pub const ALL: [Endpoint; 23] = [
        Endpoint::AgentList,
        Endpoint::AgentDetail,
        Endpoint::Deploy,
        Endpoint::MyAgents,
        Endpoint::Detail,
        Endpoint::Update,
        Endpoint::Start,
        Endpoint::Stop,
        Endpoint::CreateExtraCreditCheckout,
        Endpoint::CancelSubscription,
        Endpoint::UpgradePlan,
        Endpoint::RenewSubscription,
        Endpoint::MessageSend,
        Endpoint::MessageDetail,
        Endpoint::MessageHistory,
        Endpoint::MessageSessions,
        Endpoint::MessageCancel,
        Endpoint::MessageDeleteSession,
        Endpoint::OAuthConnect,
        Endpoint::OAuthStatus,
        Endpoint::OAuthDisconnect,
        Endpoint::OAuthTokenRefresh,
        Endpoint::OAuthFinalize,
    ];

    /// The path under the base URL, as Wiro spells it (also the fault-injection key of the
    /// simulator). OAuth's path depends on the provider; this returns its generic name.
    pub const fn path(self) -> &'static str {
        match self {
            Endpoint::AgentList => "Agent/List",
            Endpoint::AgentDetail => "Agent/Detail",
            Endpoint::Deploy => "UserAgent/Deploy",
            Endpoint::MyAgents => "UserAgent/MyAgents",
            Endpoint::Detail => "UserAgent/Detail",
            Endpoint::Update => "UserAgent/Update",
            Endpoint::Start => "UserAgent/Start",
            Endpoint::Stop => "UserAgent/Stop",
            Endpoint::CreateExtraCreditCheckout => "UserAgent/CreateExtraCreditCheckout",
            Endpoint::CancelSubscription => "UserAgent/CancelSubscription",
            Endpoint::UpgradePlan => "UserAgent/UpgradePlan",
            Endpoint::RenewSubscription => "UserAgent/RenewSubscription",
            Endpoint::MessageSend => "UserAgent/Message/Send",
            Endpoint::MessageDetail => "UserAgent/Message/Detail",
            Endpoint::MessageHistory => "UserAgent/Message/History",
            Endpoint::MessageSessions => "UserAgent/Message/Sessions",
            Endpoint::MessageCancel => "UserAgent/Message/Cancel",
            Endpoint::MessageDeleteSession => "UserAgent/Message/DeleteSession",
            Endpoint::OAuthConnect => "UserAgentOAuth/Connect",
            Endpoint::OAuthStatus => "UserAgentOAuth/Status",
            Endpoint::OAuthDisconnect => "UserAgentOAuth/Disconnect",
            Endpoint::OAuthTokenRefresh => "UserAgentOAuth/TokenRefresh",
            Endpoint::OAuthFinalize => "UserAgentOAuth/Finalize",
        }
    }

    /// Whether and how a failed call may be retried.
    pub const fn safety(self) -> Safety {
        match self {
            Endpoint::AgentList
            | Endpoint::AgentDetail
            | Endpoint::MyAgents
            | Endpoint::Detail
            | Endpoint::MessageDetail
            | Endpoint::MessageHistory
            | Endpoint::MessageSessions
            | Endpoint::OAuthStatus => Safety::ReadOnly,
            Endpoint::Update
            | Endpoint::Start
            | Endpoint::Stop
            | Endpoint::CancelSubscription
            | Endpoint::MessageCancel
            | Endpoint::MessageDeleteSession
            | Endpoint::OAuthConnect
            | Endpoint::OAuthDisconnect
            | Endpoint::OAuthTokenRefresh
            | Endpoint::OAuthFinalize => Safety::Idempotent,
            Endpoint::Deploy
            | Endpoint::UpgradePlan
            | Endpoint::RenewSubscription
            | Endpoint::CreateExtraCreditCheckout
            | Endpoint::MessageSend => Safety::Spending,
        }
    }

    /// Catalog endpoints need no API key.
    pub const fn is_public(self) -> bool {
        matches!(self, Endpoint::AgentList | Endpoint::AgentDetail)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_money_and_send_endpoints_are_spending() {
        for ep in [
            Endpoint::Deploy,
            Endpoint::UpgradePlan,
            Endpoint::RenewSubscription,
            Endpoint::CreateExtraCreditCheckout,
            Endpoint::MessageSend,
        ] {
            assert_eq!(ep.safety(), Safety::Spending, "{ep}");
        }
    }

    #[test]
    fn only_the_catalog_is_public() {
        let public: Vec<_> = Endpoint::ALL.iter().filter(|e| e.is_public()).collect();
        assert_eq!(public, [&Endpoint::AgentList, &Endpoint::AgentDetail]);
    }
}
