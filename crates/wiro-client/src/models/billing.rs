//! Subscription and credit endpoints: CreateExtraCreditCheckout, CancelSubscription,
//! UpgradePlan, RenewSubscription.

use serde::{Deserialize, Serialize};

use super::UnixTime;
use super::lenient::opt_time;

/// Body of `UserAgent/CreateExtraCreditCheckout` (note Wiro's camelCase `useragentGuid`).
#[derive(Clone, Debug, Serialize)]
pub struct ExtraCreditRequest {
    /// Instance guid.
    #[serde(rename = "useragentGuid")]
    pub useragent_guid: String,
    /// `package1`, `package2` or `package3`.
    pub pack: String,
    /// Pay from the wallet (no redirect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub useprepaid: Option<bool>,
}

/// Answer of CreateExtraCreditCheckout: `url` is null for prepaid purchases.
#[derive(Clone, Debug, Deserialize)]
pub struct ExtraCreditResponse {
    /// Stripe checkout URL (non-prepaid only).
    #[serde(default)]
    pub url: Option<String>,
}

/// Answer of CancelSubscription.
#[derive(Clone, Debug, Deserialize)]
pub struct CancelSubscriptionResponse {
    /// When the subscription will end.
    #[serde(rename = "cancelsAt", default, deserialize_with = "opt_time")]
    pub cancels_at: Option<UnixTime>,
}

/// Body of UpgradePlan.
#[derive(Clone, Debug, Serialize)]
pub struct UpgradePlanRequest {
    /// Instance guid.
    pub guid: String,
    /// Target plan: only `pro` is supported.
    pub plan: String,
}

/// Answer of UpgradePlan.
#[derive(Clone, Debug, Deserialize)]
pub struct UpgradePlanResponse {
    /// New plan (`agent-pro`).
    #[serde(default)]
    pub plan: Option<String>,
    /// Dollars charged for the rest of the period.
    #[serde(rename = "proratedCharge", default)]
    pub prorated_charge: f64,
    /// The new monthly allowance.
    #[serde(rename = "newMonthlyCredits", default)]
    pub new_monthly_credits: Option<i64>,
}

/// Answer of RenewSubscription.
#[derive(Clone, Debug, Deserialize)]
pub struct RenewSubscriptionResponse {
    /// `renewed` (charged) or `undo-cancel` (pending cancellation reversed, no charge).
    pub action: String,
    /// The renewed plan.
    #[serde(default)]
    pub plan: Option<String>,
    /// Dollars charged (renewals only).
    #[serde(default)]
    pub amount: Option<f64>,
}

impl RenewSubscriptionResponse {
    /// True when this call charged the wallet.
    pub fn charged(&self) -> bool {
        self.action == "renewed"
    }
}
