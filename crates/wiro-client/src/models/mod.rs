//! Request and response types, field for field as Wiro documents them. Unknown fields are
//! ignored so a new upstream field never breaks a call.

pub mod billing;
pub mod catalog;
pub mod configuration;
pub mod instance;
pub mod lenient;
pub mod messaging;
pub mod oauth;

pub use billing::*;
pub use catalog::*;
pub use configuration::*;
pub use instance::*;
pub use lenient::{LenientInt, UnixTime};
pub use messaging::*;
pub use oauth::{
    DriveFolder, FacebookPage, OAuthConnectRequest, OAuthConnectResponse, OAuthProvider,
    OAuthStatus, TokenRefreshResponse,
};

/// An answer that carries nothing but `result` and `errors` (Cancel, DeleteSession).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Ack {}
