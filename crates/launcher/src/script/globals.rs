//! The script's globals (`data`, `Portcullis` and the API objects) and the `runtime`
//! module that exports the API objects.

use std::sync::Arc;

use rquickjs::loader::{Loader, Resolver};
use rquickjs::module::{Declarations, Exports, ModuleDef};
use rquickjs::{Ctx, Function, Module, Object};

use super::js::{self, method, promise};
use super::state::Shared;
use super::{file, process, secrets, tasks, utils};

/// The API objects the `runtime` module exports (and the globals of the same names).
const API: [&str; 5] = ["Process", "Tasks", "File", "Logger", "Utils"];

/// Defines the globals on the script's context: the API objects, `Portcullis` (all frozen)
/// and `data`, the params document `data_json` deep-frozen. None can be reassigned.
const DEFINE: &str = r#"(function (api, data) {
    'use strict';
    const define = (name, value) => Object.defineProperty(globalThis, name, {
        value, writable: false, enumerable: false, configurable: false,
    });
    for (const name of Object.keys(api)) {
        define(name, Object.freeze(api[name]));
    }
    const pending = [data];
    while (pending.length > 0) {
        const value = pending.pop();
        if (value !== null && typeof value === 'object') {
            Object.freeze(value);
            for (const key of Object.keys(value)) pending.push(value[key]);
        }
    }
    define('data', data);
})"#;

/// Installs the globals.
pub(super) fn install(
    ctx: &Ctx<'_>,
    shared: &Arc<Shared>,
    data_json: &str,
) -> rquickjs::Result<()> {
    let api = Object::new(ctx.clone())?;
    api.set("Process", process::object(ctx, shared)?)?;
    api.set("Tasks", tasks::object(ctx, shared)?)?;
    api.set("File", file::object(ctx, shared)?)?;
    api.set("Logger", utils::logger(ctx)?)?;
    api.set("Utils", utils::object(ctx, shared)?)?;
    api.set("Portcullis", portcullis(ctx, shared)?)?;
    let data = ctx.json_parse(data_json)?;
    let define: Function<'_> = ctx.eval(DEFINE)?;
    define.call::<_, ()>((api, data))
}

/// The name the launcher reports as `Portcullis.os`.
fn os_name() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        "linux" => "linux",
        other => other,
    }
}

/// The `Portcullis` global (docs/launcher-scripts.md §5).
fn portcullis<'js>(ctx: &Ctx<'js>, shared: &Arc<Shared>) -> rquickjs::Result<Object<'js>> {
    let portcullis = Object::new(ctx.clone())?;
    portcullis.set("version", env!("CARGO_PKG_VERSION"))?;
    portcullis.set("os", os_name())?;

    let s = Arc::clone(shared);
    method(ctx, &portcullis, "sshIdentity", move |ctx: Ctx<'js>| {
        secrets::ssh_identity(&ctx, &s)
    })?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &portcullis,
        "vncPasswordFile",
        move |ctx: Ctx<'js>, password: String| {
            let password = zeroize::Zeroizing::new(password);
            secrets::vnc_password_file(&ctx, &s, &password)
        },
    )?;

    let s = Arc::clone(shared);
    method(ctx, &portcullis, "message", move |text: String| {
        s.host.message(&text)
    })?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &portcullis,
        "waitUntilClosed",
        move |ctx: Ctx<'js>, text: String| {
            let closed = s.host.wait_until_closed(&text);
            promise(
                &ctx,
                &s.clock,
                async move {
                    closed.await;
                    Ok(())
                },
                js::undefined,
            )
        },
    )?;
    Ok(portcullis)
}

/// Resolves `runtime` and nothing else: scripts import no other module.
pub(super) struct RuntimeResolver;

impl Resolver for RuntimeResolver {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
    ) -> rquickjs::Result<String> {
        if name == "runtime" {
            Ok(name.to_owned())
        } else {
            Err(rquickjs::Error::new_resolving_message(
                base,
                name,
                "launcher scripts can import only the module 'runtime'",
            ))
        }
    }
}

/// Loads the native `runtime` module.
pub(super) struct RuntimeLoader;

impl Loader for RuntimeLoader {
    fn load<'js>(&mut self, ctx: &Ctx<'js>, name: &str) -> rquickjs::Result<Module<'js>> {
        if name != "runtime" {
            return Err(rquickjs::Error::new_loading(name));
        }
        Module::declare_def::<RuntimeModule, _>(ctx.clone(), name)
    }
}

/// The `runtime` module: exports the API globals.
struct RuntimeModule;

impl ModuleDef for RuntimeModule {
    fn declare(decl: &Declarations<'_>) -> rquickjs::Result<()> {
        for name in API {
            decl.declare(name)?;
        }
        Ok(())
    }

    fn evaluate<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
        let globals = ctx.globals();
        for name in API {
            let object: Object<'js> = globals.get(name)?;
            exports.export(name, object)?;
        }
        Ok(())
    }
}
