//! Configuration errors, which name the file, the line and the setting.

use std::path::{Path, PathBuf};

use portcullis_config_file::{TomlError, file_prefix};

/// Why a configuration was refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the settings.
    #[error("{}", error.in_file(path))]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why (never the line's text).
        error: TomlError,
    },
    /// A setting's value is not acceptable.
    #[error("{}invalid `{field}`: {reason}", file_prefix(path.as_deref()))]
    Invalid {
        /// The file, when the configuration came from one.
        path: Option<PathBuf>,
        /// The setting, such as `client.required_version`.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// Adds the file name to a validation error.
    pub(super) fn in_file(self, file: &Path) -> Self {
        match self {
            Self::Invalid {
                path: None,
                field,
                reason,
            } => Self::Invalid {
                path: Some(file.to_owned()),
                field,
                reason,
            },
            other => other,
        }
    }
}

pub(super) fn invalid(field: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        path: None,
        field,
        reason,
    }
}
