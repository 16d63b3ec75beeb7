//! The `Tasks` object: tunnels, waitable apps and files to remove (docs/launcher-scripts.md
//! §4.2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use portcullis_proto::TicketId;
use portcullis_proto::tunnel::TunnelProtocol;
use rquickjs::{Ctx, FromJs, Object, Value};

use super::host::TunnelOptions;
use super::js::{self, method, promise, throw_type};
use super::state::Shared;

/// Builds the `Tasks` object.
pub(super) fn object<'js>(ctx: &Ctx<'js>, shared: &Arc<Shared>) -> rquickjs::Result<Object<'js>> {
    let tasks = Object::new(ctx.clone())?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &tasks,
        "startTunnel",
        move |ctx: Ctx<'js>, options: Value<'js>| {
            let options = tunnel_options(&ctx, options)?;
            let host = Arc::clone(&s.host);
            promise(
                &ctx,
                &s.clock,
                async move { host.start_tunnel(options).await },
                endpoint,
            )
        },
    )?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &tasks,
        "addWaitableApp",
        move |ctx: Ctx<'js>, h: f64| {
            let h = js::handle(&ctx, h)?;
            let mut tables = s.tables();
            if !tables.procs.contains_key(&h) {
                return Err(throw_type(
                    &ctx,
                    &format!("{h} is not a handle of a started process"),
                ));
            }
            tables.waitable.push(h);
            Ok(())
        },
    )?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &tasks,
        "addEarlyUnlinkableFile",
        move |path: String| {
            s.tables().early_files.push(PathBuf::from(path));
        },
    )?;

    let s = Arc::clone(shared);
    method(ctx, &tasks, "addLateUnlinkableFile", move |path: String| {
        s.tables().late_files.push(PathBuf::from(path));
    })?;

    Ok(tasks)
}

/// `{port, host}` of a local tunnel endpoint.
fn endpoint<'js>(ctx: &Ctx<'js>, addr: SocketAddr) -> rquickjs::Result<Value<'js>> {
    let object = Object::new(ctx.clone())?;
    object.set("port", addr.port())?;
    object.set("host", addr.ip().to_string())?;
    Ok(object.into_value())
}

/// An option of `startTunnel`: `None` when absent (`undefined` or `null`), else a value of
/// type `T` or a `TypeError` naming the option.
fn option<'js, T: FromJs<'js>>(
    ctx: &Ctx<'js>,
    options: &Object<'js>,
    name: &str,
    type_name: &str,
) -> rquickjs::Result<Option<T>> {
    let value: Value<'js> = options.get(name)?;
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    T::from_js(ctx, value).map(Some).map_err(|_| {
        throw_type(
            ctx,
            &format!("startTunnel: the option {name} must be a {type_name}"),
        )
    })
}

/// A required option of `startTunnel`.
fn required<'js, T: FromJs<'js>>(
    ctx: &Ctx<'js>,
    options: &Object<'js>,
    name: &str,
    type_name: &str,
) -> rquickjs::Result<T> {
    option(ctx, options, name, type_name)?
        .ok_or_else(|| throw_type(ctx, &format!("startTunnel: the option {name} is required")))
}

/// Parses the options of `startTunnel` (docs/launcher-scripts.md §4.2). Unknown options
/// are ignored, as is `shared_secret` (the launcher uses the secret of its own exchange).
fn tunnel_options<'js>(ctx: &Ctx<'js>, options: Value<'js>) -> rquickjs::Result<TunnelOptions> {
    let Some(options) = options.into_object() else {
        return Err(throw_type(ctx, "startTunnel needs an options object"));
    };
    let o = &options;
    let addr: String = required(ctx, o, "addr", "string")?;
    let port = js::port(
        ctx,
        "startTunnel: the option port",
        required(ctx, o, "port", "number")?,
        1,
    )?;
    let ticket: String = required(ctx, o, "ticket", "string")?;
    let ticket = TicketId::parse(&ticket).map_err(|_| {
        throw_type(
            ctx,
            "startTunnel: the option ticket must be a tunnel ticket (48 letters and digits)",
        )
    })?;
    let startup_time_ms = match option::<f64>(ctx, o, "startup_time_ms", "number")? {
        None => 0,
        Some(ms) => {
            let duration = js::millis(ctx, "startTunnel: the option startup_time_ms", ms)?;
            u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
        }
    };
    let check_certificate = option(ctx, o, "check_certificate", "boolean")?.unwrap_or(true);
    let local_port = match option::<f64>(ctx, o, "local_port", "number")? {
        None => None,
        Some(p) => Some(js::port(ctx, "startTunnel: the option local_port", p, 0)?)
            .filter(|port| *port != 0),
    };
    let keep_listening_after_timeout =
        option(ctx, o, "keep_listening_after_timeout", "boolean")?.unwrap_or(false);
    let enable_ipv6 = option(ctx, o, "enable_ipv6", "boolean")?.unwrap_or(false);
    let tls = option(ctx, o, "tls", "boolean")?.unwrap_or(true);
    let protocol = match option::<String>(ctx, o, "protocol", "string")? {
        None => TunnelProtocol::V1,
        Some(name) => name
            .parse()
            .map_err(|error| throw_type(ctx, &format!("startTunnel: {error}")))?,
    };
    Ok(TunnelOptions {
        addr,
        port,
        ticket,
        startup_time_ms,
        check_certificate,
        local_port,
        keep_listening_after_timeout,
        enable_ipv6,
        tls,
        protocol,
    })
}
