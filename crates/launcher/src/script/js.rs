//! Helpers shared by the API objects: errors, numbers, promises from Rust futures.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rquickjs::{Ctx, Exception, Function, IntoJs, Object, Promise, Value};

use super::state::Clock;

/// Throws an `Error` with `message` in the script.
pub(super) fn throw(ctx: &Ctx<'_>, message: &str) -> rquickjs::Error {
    Exception::throw_message(ctx, message)
}

/// Throws a `TypeError` with `message` in the script (an argument of the wrong type).
pub(super) fn throw_type(ctx: &Ctx<'_>, message: &str) -> rquickjs::Error {
    Exception::throw_type(ctx, message)
}

/// A duration in milliseconds given by the script: a finite number, not negative.
pub(super) fn millis(ctx: &Ctx<'_>, what: &str, ms: f64) -> rquickjs::Result<Duration> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(throw_type(
            ctx,
            &format!("{what} must be a number of milliseconds, not {ms}"),
        ));
    }
    // Saturating: a duration of many years is as good as forever.
    Ok(Duration::from_millis(ms as u64))
}

/// A process handle given by the script.
pub(super) fn handle(ctx: &Ctx<'_>, h: f64) -> rquickjs::Result<u32> {
    if h.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&h) {
        return Err(throw_type(ctx, &format!("{h} is not a process handle")));
    }
    Ok(h as u32)
}

/// A TCP port given by the script: an integer from `min` to 65535.
pub(super) fn port(ctx: &Ctx<'_>, what: &str, port: f64, min: u16) -> rquickjs::Result<u16> {
    if port.fract() != 0.0 || !(f64::from(min)..=65535.0).contains(&port) {
        return Err(throw_type(
            ctx,
            &format!("{what} must be a port number, not {port}"),
        ));
    }
    Ok(port as u16)
}

/// Converts the result of an asynchronous API function into JavaScript.
pub(super) type Convert<'js, T> = fn(&Ctx<'js>, T) -> rquickjs::Result<Value<'js>>;

/// A promise settled by `future`: resolved with `convert`'s value, or rejected with an
/// `Error` carrying the future's message. The clock restarts when the future completes:
/// the script resumes with a full time budget for its synchronous code.
pub(super) fn promise<'js, T, F>(
    ctx: &Ctx<'js>,
    clock: &Arc<Clock>,
    future: F,
    convert: Convert<'js, T>,
) -> rquickjs::Result<Promise<'js>>
where
    F: Future<Output = Result<T, String>> + 'js,
    T: 'js,
{
    let ctx2 = ctx.clone();
    let clock = Arc::clone(clock);
    Promise::wrap_future(ctx, async move {
        let outcome = future.await;
        clock.reset();
        match outcome {
            Ok(value) => convert(&ctx2, value),
            Err(message) => Err(throw(&ctx2, &message)),
        }
    })
}

/// `undefined`, for promises that resolve to nothing.
pub(super) fn undefined<'js>(ctx: &Ctx<'js>, (): ()) -> rquickjs::Result<Value<'js>> {
    Ok(Value::new_undefined(ctx.clone()))
}

/// A boolean value.
pub(super) fn boolean<'js>(ctx: &Ctx<'js>, value: bool) -> rquickjs::Result<Value<'js>> {
    value.into_js(ctx)
}

/// Sets `name` on `object` to the function `f`, named `name`.
pub(super) fn method<'js, P, F>(
    ctx: &Ctx<'js>,
    object: &Object<'js>,
    name: &str,
    f: F,
) -> rquickjs::Result<()>
where
    F: rquickjs::function::IntoJsFunc<'js, P> + 'js,
{
    let function = Function::new(ctx.clone(), f)?.with_name(name)?;
    object.set(name, function)
}
