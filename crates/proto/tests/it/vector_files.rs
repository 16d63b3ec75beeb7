//! The known-answer files in `tests/vectors/` (OpenUDS 5's in `tests/vectors/openuds5/`).

use std::path::PathBuf;

use serde_json::Value;

/// Parses `tests/vectors/openuds5/<name>`.
pub(crate) fn openuds5(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/openuds5")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The string field `name` of a vector object.
pub(crate) fn text<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {name} missing"))
}
