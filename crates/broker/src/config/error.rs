//! Configuration errors, which name the file, the line and the setting.

use std::path::{Path, PathBuf};

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
    #[error("{}{}: {message}", path.display(), location(*line, *column, field.as_deref()))]
    Parse {
        /// The file.
        path: PathBuf,
        /// The setting, such as `limits.body_limit_bytes`, when the error is about one.
        field: Option<String>,
        /// 1-based line of the error, 0 if unknown.
        line: usize,
        /// 1-based column of the error, 0 if unknown.
        column: usize,
        /// The parser's message (it names settings and types, never quotes a value's line).
        message: String,
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
    pub(super) fn parse(
        path: &Path,
        text: &str,
        error: &serde_path_to_error::Error<toml::de::Error>,
    ) -> Self {
        let inner = error.inner();
        let (line, column) = inner
            .span()
            .map_or((0, 0), |span| line_and_column(text, span.start));
        let field = error.path().to_string();
        // toml's messages may span lines ("invalid array\nexpected `]`"): keep one line.
        let message = inner
            .message()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        Self::Parse {
            path: path.to_owned(),
            field: (field != ".").then_some(field),
            line,
            column,
            message: if message.is_empty() {
                "invalid TOML".to_owned()
            } else {
                message
            },
        }
    }

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

fn location(line: usize, column: usize, field: Option<&str>) -> String {
    let mut out = String::new();
    if line > 0 {
        out = format!(", line {line}, column {column}");
    }
    if let Some(field) = field {
        out.push_str(&format!(", `{field}`"));
    }
    out
}

fn file_prefix(path: Option<&Path>) -> String {
    path.map(|path| format!("{}: ", path.display()))
        .unwrap_or_default()
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before
        .get(line_start..)
        .map_or(0, |rest| rest.chars().count())
        + 1;
    (line, column)
}
