//! What the broker's and the tunnel server's configuration files share: TOML read into
//! settings, with errors that name the line, the column and the setting, and never quote
//! the line itself (it may be a database URL with its password, or a token).
//!
//! toml's own `Display` shows the offending line; [`TomlError`] keeps only the parser's
//! message and the position of its span.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

/// Why TOML text did not become settings.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub struct TomlError {
    /// The setting, such as `limits.record_size`, when the error is about one.
    pub field: Option<String>,
    /// 1-based line of the error, 0 if unknown.
    pub line: usize,
    /// 1-based column (in characters) of the error, 0 if unknown.
    pub column: usize,
    /// The parser's message, on one line (it names settings and types, never a line's text).
    pub message: String,
}

/// Reads `text` as the settings `T`; unknown settings are refused where `T` says so
/// (`#[serde(deny_unknown_fields)]`).
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, TomlError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|error| {
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
        TomlError {
            field: (field != ".").then_some(field),
            line,
            column,
            message: if message.is_empty() {
                "invalid TOML".to_owned()
            } else {
                message
            },
        }
    })
}

impl TomlError {
    /// The error after the name of the file it is in: `FILE, line 5, column 15,
    /// `limits.record_size`: MESSAGE`.
    pub fn in_file(&self, path: &Path) -> String {
        format!("{}{}: {}", path.display(), self.location(), self.message)
    }

    /// `, line L, column C` (when known) and `, `field`` (when known).
    fn location(&self) -> String {
        let mut out = String::new();
        if self.line > 0 {
            out = format!(", line {}, column {}", self.line, self.column);
        }
        if let Some(field) = &self.field {
            out.push_str(&format!(", `{field}`"));
        }
        out
    }
}

impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = self.location();
        match location.strip_prefix(", ") {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// `FILE: ` when there is a file, for errors about a setting's value.
pub fn file_prefix(path: Option<&Path>) -> String {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        database: Option<String>,
        limits: Option<Limits>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        size: u32,
    }

    #[test]
    fn valid_text_becomes_settings_and_an_unknown_setting_is_refused() {
        let settings = from_toml::<Settings>("database = \"x\"\n[limits]\nsize = 3\n").unwrap();
        assert_eq!(settings.database.as_deref(), Some("x"));
        assert_eq!(settings.limits.map(|limits| limits.size), Some(3));
        let error = from_toml::<Settings>("[limits]\nsize = 3\ncolour = 1\n").unwrap_err();
        assert_eq!(
            (error.line, error.field.as_deref()),
            (3, Some("limits.colour"))
        );
    }

    #[test]
    fn an_error_names_the_line_the_column_and_the_setting() {
        let error =
            from_toml::<Settings>("database = \"x\"\n[limits]\nsize = \"big\"\n").unwrap_err();
        assert_eq!(error.field.as_deref(), Some("limits.size"));
        assert_eq!((error.line, error.column), (3, 8));
        let said = error.in_file(Path::new("broker.toml"));
        assert!(
            said.starts_with("broker.toml, line 3, column 8, `limits.size`: "),
            "{said}"
        );
        assert!(
            error
                .to_string()
                .starts_with("line 3, column 8, `limits.size`: ")
        );
    }

    #[test]
    fn an_error_never_quotes_the_line() {
        let secret = "postgres://app:hunter2@db/portcullis";
        let error = from_toml::<Settings>(&format!("database = {secret}\n")).unwrap_err();
        let said = error.in_file(Path::new("broker.toml"));
        assert!(!said.contains("hunter2"), "{said}");
        assert_eq!(error.line, 1, "{said}");
    }

    #[test]
    fn lines_and_columns_count_characters() {
        assert_eq!(line_and_column("ab\ncdé", 7), (2, 4));
        assert_eq!(line_and_column("", 0), (1, 1));
        assert_eq!(line_and_column("a", 99), (1, 2));
    }
}
