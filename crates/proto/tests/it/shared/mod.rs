//! Access to the known-answer files in `../shared/vectors/` (beside the repository).

use std::path::PathBuf;

use serde_json::Value;

/// Parses `../shared/vectors/<name>`, failing with a message that says where it must be.
pub(crate) fn vector(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read {}: {error}. The shared/ folder must sit beside the repository \
             (…/shared/vectors next to …/main).",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The string field `name` of a vector object.
pub(crate) fn text<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {name} missing"))
}
