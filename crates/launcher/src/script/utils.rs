//! The `Logger` and `Utils` objects (docs/launcher-scripts.md §4.4, §4.5).

use std::sync::Arc;
use std::time::Duration;

use rquickjs::function::Rest;
use rquickjs::{Ctx, Object, Value};

use super::js::{self, method, promise, throw};
use super::process::sleep;
use super::state::Shared;

/// `Utils.testServer`'s timeout when the script gives 0.
const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_millis(500);

/// Builds the `Logger` object: each level writes to `tracing` with target `script`.
pub(super) fn logger<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    let logger = Object::new(ctx.clone())?;
    method(
        ctx,
        &logger,
        "trace",
        |m: String| tracing::trace!(target: "script", "{m}"),
    )?;
    method(
        ctx,
        &logger,
        "debug",
        |m: String| tracing::debug!(target: "script", "{m}"),
    )?;
    method(
        ctx,
        &logger,
        "info",
        |m: String| tracing::info!(target: "script", "{m}"),
    )?;
    method(
        ctx,
        &logger,
        "warn",
        |m: String| tracing::warn!(target: "script", "{m}"),
    )?;
    method(
        ctx,
        &logger,
        "error",
        |m: String| tracing::error!(target: "script", "{m}"),
    )?;
    Ok(logger)
}

/// Builds the `Utils` object.
pub(super) fn object<'js>(ctx: &Ctx<'js>, shared: &Arc<Shared>) -> rquickjs::Result<Object<'js>> {
    let utils = Object::new(ctx.clone())?;

    method(ctx, &utils, "expandVars", |text: String| {
        expand_vars(&text, |name| {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    })?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &utils,
        "testServer",
        move |ctx: Ctx<'js>, host: String, port: f64, ms: f64| {
            let port = js::port(&ctx, "the port", port, 1)?;
            let limit = match js::millis(&ctx, "the timeout", ms)? {
                Duration::ZERO => DEFAULT_TEST_TIMEOUT,
                limit => limit,
            };
            promise(
                &ctx,
                &s.clock,
                async move {
                    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
                    Ok(matches!(
                        tokio::time::timeout(limit, connect).await,
                        Ok(Ok(_))
                    ))
                },
                js::boolean,
            )
        },
    )?;

    let s = Arc::clone(shared);
    method(ctx, &utils, "sleep", move |ctx: Ctx<'js>, ms: f64| {
        sleep(&ctx, &s, ms)
    })?;

    for name in [
        "cryptProtectData",
        "writeHkcu",
        "writeHkcuDword",
        "readHkcu",
        "readHklm",
    ] {
        method(
            ctx,
            &utils,
            name,
            move |ctx: Ctx<'js>, _args: Rest<Value<'js>>| windows_only(&ctx, name),
        )?;
    }

    Ok(utils)
}

/// The Windows-only functions (DPAPI, registry).
fn windows_only(ctx: &Ctx<'_>, name: &str) -> rquickjs::Result<()> {
    if cfg!(windows) {
        Err(throw(
            ctx,
            &format!("Utils.{name} is not supported by this launcher yet."),
        ))
    } else {
        Err(throw(
            ctx,
            &format!("Utils.{name} is only available on Windows."),
        ))
    }
}

/// Expands environment variables in `text`: `%VAR%` on Windows, `$VAR` and `${VAR}`
/// elsewhere. Unknown variables stay as written.
pub(super) fn expand_vars(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    if cfg!(windows) {
        expand_percent(text, lookup)
    } else {
        expand_dollar(text, lookup)
    }
}

/// Whether `c` may appear in a variable name after its first character.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `$VAR` and `${VAR}`.
fn expand_dollar(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, written_len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) if end > 0 && braced[..end].chars().all(is_name_char) => {
                    (&braced[..end], end + 2)
                }
                _ => ("", 0),
            }
        } else {
            let starts_name = after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            let end = if starts_name {
                after.find(|c| !is_name_char(c)).unwrap_or(after.len())
            } else {
                0
            };
            (&after[..end], end)
        };
        match (written_len, lookup(name)) {
            (1.., Some(value)) => out.push_str(&value),
            _ => out.push_str(&rest[at..at + 1 + written_len]),
        }
        rest = &after[written_len..];
    }
    out.push_str(rest);
    out
}

/// `%VAR%`.
fn expand_percent(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.find('%') {
            Some(end) if end > 0 => match lookup(&after[..end]) {
                Some(value) => {
                    out.push_str(&value);
                    rest = &after[end + 1..];
                }
                None => {
                    // The closing `%` may open the next variable.
                    out.push('%');
                    out.push_str(&after[..end]);
                    rest = &after[end..];
                }
            },
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/a".into()),
            "X_1" => Some("x".into()),
            _ => None,
        }
    }

    #[test]
    fn dollar() {
        assert_eq!(expand_dollar("$HOME/.ssh", vars), "/home/a/.ssh");
        assert_eq!(expand_dollar("${HOME}x ${X_1}$X_1", vars), "/home/ax xx");
        assert_eq!(
            expand_dollar("$NOPE ${NOPE} $ ${} ${a-b} $1 a$", vars),
            "$NOPE ${NOPE} $ ${} ${a-b} $1 a$"
        );
        assert_eq!(expand_dollar("€$HOME€", vars), "€/home/a€");
    }

    #[test]
    fn percent() {
        assert_eq!(expand_percent("%HOME%\\x", vars), "/home/a\\x");
        assert_eq!(
            expand_percent("100% %NOPE%%HOME% %%", vars),
            "100% %NOPE%/home/a %%"
        );
        assert_eq!(expand_percent("a%", vars), "a%");
    }
}
