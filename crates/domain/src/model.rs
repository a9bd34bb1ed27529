//! The states and enumerations stored in the database, as Rust types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "{other:?} is not a valid {}; expected one of: {}",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
    };
}

text_enum!(
    /// Where a customer stands with the SaaS.
    CustomerStatus {
        /// Normal.
        Active => "active",
        /// Agents stopped, renewals cancelled at period end, customer calls refused.
        Suspended => "suspended",
        /// Gone for good; the ledger is kept.
        Closed => "closed",
    }
);

text_enum!(
    /// A Wiro plan.
    Plan {
        /// Starter.
        Starter => "starter",
        /// Pro (extra-credit packs available).
        Pro => "pro",
    }
);

text_enum!(
    /// Our provisioning and run state of an instance.
    InstanceState {
        /// Ordered; the job has not started.
        Pending => "pending",
        /// Deploy is being called (or its outcome resolved).
        Deploying => "deploying",
        /// Deployed; credentials and custom skills are being sent.
        Configuring => "configuring",
        /// Wiro needs credentials the customer has not given yet.
        AwaitingCredentials => "awaiting_credentials",
        /// Credentials are complete, but a required account (Instagram, X...) is not connected
        /// yet through OAuth.
        AwaitingConnection => "awaiting_connection",
        /// Start was called; waiting for Running.
        Starting => "starting",
        /// Running on Wiro.
        Running => "running",
        /// Its credits ran out (`[SYSTEM_CREDIT_LIMIT_REACHED]`, or Start refused with `No
        /// credits available`): the top-up policy acts at once, and the agent starts again by
        /// itself once Wiro shows credits.
        OutOfCredits => "out_of_credits",
        /// Stop was called; waiting for Stopped.
        Stopping => "stopping",
        /// Stopped on purpose.
        Stopped => "stopped",
        /// A permanent error; see `last_error`. Ops can retry.
        Failed => "failed",
    }
);

text_enum!(
    /// What the customer (or ops) wants the agent to be.
    DesiredState {
        /// Keep it running.
        Running => "running",
        /// Keep it stopped.
        Stopped => "stopped",
    }
);

text_enum!(
    /// A consequential upstream call: it creates something, moves money or acts for a customer.
    OperationKind {
        /// UserAgent/Deploy.
        Deploy => "deploy",
        /// RenewSubscription on an expired subscription (charged).
        Renew => "renew",
        /// RenewSubscription on an active subscription with a pending cancel (free).
        UndoCancel => "undo_cancel",
        /// UpgradePlan.
        Upgrade => "upgrade",
        /// CreateExtraCreditCheckout.
        ExtraCredits => "extra_credits",
        /// CancelSubscription.
        Cancel => "cancel",
        /// Message/Send: the agent acts on it (posts, replies).
        MessageSend => "message_send",
    }
);

text_enum!(
    /// Where an upstream operation stands.
    OperationState {
        /// Sent, or about to be.
        Calling => "calling",
        /// Sent and the answer was lost: must be checked upstream.
        Unknown => "unknown",
        /// Wiro confirmed it.
        Succeeded => "succeeded",
        /// Found upstream after an unknown outcome and taken as ours.
        Adopted => "adopted",
        /// Checked upstream: it did not happen.
        NotFound => "not_found",
        /// Wiro refused it (nothing happened).
        Refused => "refused",
        /// Never sent: its deadline (from the lease) had passed.
        NotSent => "not_sent",
    }
);

impl OperationState {
    /// Still to be decided: `calling` or `unknown`.
    pub fn is_unresolved(self) -> bool {
        matches!(self, OperationState::Calling | OperationState::Unknown)
    }

    /// It happened upstream: `succeeded` or `adopted`.
    pub fn happened(self) -> bool {
        matches!(self, OperationState::Succeeded | OperationState::Adopted)
    }
}

text_enum!(
    /// Who asked for a cancellation, which decides who may take it back: a reactivation undoes
    /// only a suspension's cancel; nothing of ours undoes a customer's or ops' cancel.
    CancelSource {
        /// The customer cancelled.
        Customer => "customer",
        /// Ops cancelled.
        Ops => "ops",
        /// Suspending or closing the customer cancelled it.
        Suspension => "suspension",
    }
);

text_enum!(
    /// An extra-credit pack as Wiro names it.
    Pack {
        /// The first pack.
        Package1 => "package1",
        /// The second pack.
        Package2 => "package2",
        /// The third pack.
        Package3 => "package3",
    }
);

text_enum!(
    /// A wallet charge.
    ChargeKind {
        /// The first period, paid by Deploy.
        Deploy => "deploy",
        /// Prorated Starter → Pro.
        Upgrade => "upgrade",
        /// A new period.
        Renewal => "renewal",
        /// An extra-credit pack.
        ExtraCredits => "extra_credits",
        /// A second instance one Deploy created by mistake: the operator's loss, cancelled.
        DuplicateDeploy => "duplicate_deploy",
    }
);

impl InstanceState {
    /// States the provisioning job still has work in.
    pub fn is_in_progress(self) -> bool {
        matches!(
            self,
            InstanceState::Pending
                | InstanceState::Deploying
                | InstanceState::Configuring
                | InstanceState::Starting
                | InstanceState::Stopping
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_bad_values_list_the_choices() {
        for state in InstanceState::ALL {
            assert_eq!(state.as_str().parse::<InstanceState>().unwrap(), *state);
        }
        let err = "gold".parse::<Plan>().unwrap_err();
        assert!(err.contains("starter, pro"), "{err}");
    }
}
