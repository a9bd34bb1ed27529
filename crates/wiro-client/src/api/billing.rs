use crate::models::{
    CancelSubscriptionResponse, ExtraCreditRequest, ExtraCreditResponse, GuidRequest,
    RenewSubscriptionResponse, UpgradePlanRequest, UpgradePlanResponse,
};
use crate::{Client, Endpoint, Result};

impl Client {
    /// `UserAgent/CreateExtraCreditCheckout` with `useprepaid: true`: buys `pack` from the
    /// wallet. Spends money: never retried here.
    ///
    /// # Errors
    /// Refusals such as [`crate::WiroError::ExtraCreditsProOnly`] or
    /// [`crate::WiroError::InsufficientWalletBalance`]; an unknown outcome must be reconciled.
    pub async fn buy_extra_credits(&self, guid: &str, pack: &str) -> Result<ExtraCreditResponse> {
        let request = ExtraCreditRequest {
            useragent_guid: guid.to_owned(),
            pack: pack.to_owned(),
            useprepaid: Some(true),
        };
        self.call(Endpoint::CreateExtraCreditCheckout, &request)
            .await
    }

    /// `UserAgent/CancelSubscription`: ends a prepaid subscription at period end.
    ///
    /// # Errors
    /// [`crate::WiroError::StripeCancelViaPortal`] for Stripe subscriptions.
    pub async fn cancel_subscription(&self, guid: &str) -> Result<CancelSubscriptionResponse> {
        self.call(
            Endpoint::CancelSubscription,
            &GuidRequest {
                guid: guid.to_owned(),
            },
        )
        .await
    }

    /// `UserAgent/UpgradePlan` to `plan` (only `pro`). Charges the prorated difference: never
    /// retried here.
    ///
    /// # Errors
    /// [`crate::WiroError::CannotDowngrade`], wallet refusals, or an unknown outcome.
    pub async fn upgrade_plan(&self, guid: &str, plan: &str) -> Result<UpgradePlanResponse> {
        let request = UpgradePlanRequest {
            guid: guid.to_owned(),
            plan: plan.to_owned(),
        };
        self.call(Endpoint::UpgradePlan, &request).await
    }

    /// `UserAgent/RenewSubscription`: renews an expired subscription (charged) or reverses a
    /// pending cancellation (free). Never retried here.
    ///
    /// # Errors
    /// [`crate::WiroError::SubscriptionAlreadyActive`], wallet refusals, or an unknown outcome.
    pub async fn renew_subscription(&self, guid: &str) -> Result<RenewSubscriptionResponse> {
        self.call(
            Endpoint::RenewSubscription,
            &GuidRequest {
                guid: guid.to_owned(),
            },
        )
        .await
    }
}
