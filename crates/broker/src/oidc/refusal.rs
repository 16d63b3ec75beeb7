//! Why an OpenID Connect sign-in was refused: a code and the technical reason for the
//! audit log and the operator, and a sentence for the user.

/// A refused sign-in.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Refusal {
    /// The provider did not answer (in time), or answered nonsense to discovery.
    Unreachable(String),
    /// No valid pending sign-in for this callback: wrong `state`, missing or expired cookie.
    State(String),
    /// The provider sent an error instead of a code (the user cancelled, say).
    ProviderError(String),
    /// The code was refused (used already, say) or the ID token failed a check.
    Token(String),
    /// The e-mail domain is not allowed, or unverified.
    NotAllowed(String),
    /// The claim maps to no group and `require_group` is set.
    NoGroup,
    /// A user of that name exists and is not this provider's user.
    NameTaken(String),
    /// The account was disabled by an administrator.
    Disabled,
}

impl Refusal {
    /// A stable word for the audit log (`detail.reason`) and the page (`data-reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::State(_) => "state",
            Self::ProviderError(_) => "provider_error",
            Self::Token(_) => "token",
            Self::NotAllowed(_) => "not_allowed",
            Self::NoGroup => "no_group",
            Self::NameTaken(_) => "name_taken",
            Self::Disabled => "disabled",
        }
    }

    /// The technical reason, for the operator (never secrets).
    pub fn detail(&self) -> String {
        match self {
            Self::Unreachable(reason)
            | Self::State(reason)
            | Self::ProviderError(reason)
            | Self::Token(reason)
            | Self::NotAllowed(reason)
            | Self::NameTaken(reason) => reason.clone(),
            Self::NoGroup => "the group claim maps to no Portcullis group".to_owned(),
            Self::Disabled => "the account is disabled".to_owned(),
        }
    }

    /// What the user reads, about the provider named `provider`.
    pub fn user_message(&self, provider: &str) -> String {
        match self {
            Self::Unreachable(_) => format!(
                "{provider} could not be reached. Try again in a few minutes; if it keeps \
                 happening, tell your administrator."
            ),
            Self::State(_) => "This sign-in had expired or was started in another window. \
                               Please sign in again."
                .to_owned(),
            Self::ProviderError(_) => {
                format!("{provider} did not sign you in. Please sign in again.")
            }
            Self::Token(_) => format!(
                "The answer from {provider} could not be verified, so you were not signed \
                 in. Please sign in again; if it keeps happening, tell your administrator."
            ),
            Self::NotAllowed(_) => "Your account is not allowed to sign in here.".to_owned(),
            Self::NoGroup => "Your account is not in any group that may use this portal. \
                              Ask your administrator for access."
                .to_owned(),
            Self::NameTaken(_) => format!(
                "An account with your name already exists here and is not linked to \
                 {provider}. Ask your administrator."
            ),
            Self::Disabled => "Your account is disabled. Ask your administrator.".to_owned(),
        }
    }
}
