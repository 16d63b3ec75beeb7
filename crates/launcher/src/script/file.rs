//! The `File` object (docs/launcher-scripts.md §4.3).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rquickjs::{Ctx, Object};

use super::js::{method, throw, throw_type};
use super::process::is_executable;
use super::state::Shared;

/// Builds the `File` object.
pub(super) fn object<'js>(ctx: &Ctx<'js>, shared: &Arc<Shared>) -> rquickjs::Result<Object<'js>> {
    let file = Object::new(ctx.clone())?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &file,
        "createTempFile",
        move |ctx: Ctx<'js>, folder: Option<String>, content: String, extension: String| {
            let path = create_temp_file(&ctx, folder, &content, &extension)?;
            s.tables().temp_files.push(path.clone());
            Ok::<_, rquickjs::Error>(path.to_string_lossy().into_owned())
        },
    )?;

    let s = Arc::clone(shared);
    method(ctx, &file, "read", move |ctx: Ctx<'js>, path: String| {
        read(&ctx, &path, s.memory_bytes)
    })?;

    method(
        ctx,
        &file,
        "write",
        |ctx: Ctx<'js>, path: String, content: String| {
            std::fs::write(&path, content)
                .map(|()| true)
                .map_err(|err| throw(&ctx, &format!("{path} could not be written: {err}")))
        },
    )?;

    method(ctx, &file, "exists", |path: String| {
        Path::new(&path).exists()
    })?;
    method(ctx, &file, "isExecutable", |path: String| {
        is_executable(Path::new(&path))
    })?;
    method(ctx, &file, "isDirectory", |path: String| {
        Path::new(&path).is_dir()
    })?;
    method(ctx, &file, "getTempDirectory", || {
        std::env::temp_dir().to_string_lossy().into_owned()
    })?;
    method(ctx, &file, "getHomeDirectory", |ctx: Ctx<'js>| {
        home_directory()
            .map(|home| home.to_string_lossy().into_owned())
            .ok_or_else(|| throw(&ctx, "The home directory is not known."))
    })?;

    Ok(file)
}

/// The current user's home directory.
fn home_directory() -> Option<PathBuf> {
    let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    std::env::var_os(var)
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// Creates a new file with a random name ending in `extension` in `folder` (or the
/// temporary directory), never replacing one, mode 0600 on Unix, holding `content`.
fn create_temp_file(
    ctx: &Ctx<'_>,
    folder: Option<String>,
    content: &str,
    extension: &str,
) -> rquickjs::Result<PathBuf> {
    let extension = extension.strip_prefix('.').unwrap_or(extension);
    if extension.contains(['/', '\\', '\0']) {
        return Err(throw_type(
            ctx,
            &format!("{extension:?} is not a file extension"),
        ));
    }
    let suffix = if extension.is_empty() {
        String::new()
    } else {
        format!(".{extension}")
    };
    let folder = folder.map_or_else(std::env::temp_dir, PathBuf::from);
    // `tempfile` opens with O_CREAT | O_EXCL and mode 0600, retrying on a name collision.
    let (mut file, path) = tempfile::Builder::new()
        .prefix("portcullis-")
        .suffix(&suffix)
        .rand_bytes(12)
        .tempfile_in(&folder)
        .and_then(|file| file.keep().map_err(|err| err.error))
        .map_err(|err| {
            throw(
                ctx,
                &format!("A file could not be created in {}: {err}", folder.display()),
            )
        })?;
    if let Err(err) = file
        .write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
    {
        let _ = std::fs::remove_file(&path);
        return Err(throw(
            ctx,
            &format!("{} could not be written: {err}", path.display()),
        ));
    }
    Ok(path)
}

/// `File.read`: the file as UTF-8, at most `limit` bytes.
fn read(ctx: &Ctx<'_>, path: &str, limit: usize) -> rquickjs::Result<String> {
    let unreadable =
        |err: &dyn std::fmt::Display| throw(ctx, &format!("{path} could not be read: {err}"));
    let file = std::fs::File::open(path).map_err(|err| unreadable(&err))?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(|err| unreadable(&err))?;
    if bytes.len() > limit {
        return Err(unreadable(&"it is larger than the script's memory limit"));
    }
    String::from_utf8(bytes).map_err(|_| unreadable(&"it is not UTF-8 text"))
}
