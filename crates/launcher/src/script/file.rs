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
        read(&ctx, &path, s.memory_bytes, s.clock.remaining())
    })?;

    method(
        ctx,
        &file,
        "write",
        |ctx: Ctx<'js>, path: String, content: String| {
            write(&path, &content)
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

/// Opens `path` as a regular file without waiting: a FIFO or a device would block the
/// script (and its time limit) in `open` or `read`, so they are refused.
fn open_regular(path: &str, options: &mut std::fs::OpenOptions) -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let nonblocking = rustix::fs::OFlags::NONBLOCK.bits();
        options.custom_flags(i32::try_from(nonblocking).unwrap_or_default());
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    Ok(file)
}

/// `File.write`: creates or replaces the regular file `path`.
fn write(path: &str, content: &str) -> std::io::Result<()> {
    let mut file = open_regular(path, std::fs::OpenOptions::new().write(true).create(true))?;
    file.set_len(0)?;
    file.write_all(content.as_bytes())
}

/// `File.read`: the regular file as UTF-8, at most `limit` bytes, read within `time` (the
/// script's time limit: a read that takes longer, as on a hung network file system, fails
/// instead of stopping the script).
fn read(
    ctx: &Ctx<'_>,
    path: &str,
    limit: usize,
    time: std::time::Duration,
) -> rquickjs::Result<String> {
    let unreadable =
        |err: &dyn std::fmt::Display| throw(ctx, &format!("{path} could not be read: {err}"));
    let file = open_regular(path, std::fs::OpenOptions::new().read(true))
        .map_err(|err| unreadable(&err))?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let read = file.take(cap).read_to_end(&mut bytes).map(|_| bytes);
        // The script may have given up waiting.
        let _ = sender.send(read);
    });
    let bytes = match receiver.recv_timeout(time) {
        Ok(read) => read.map_err(|err| unreadable(&err))?,
        Err(_) => {
            return Err(unreadable(
                &"it did not answer within the script's time limit",
            ));
        }
    };
    if bytes.len() > limit {
        return Err(unreadable(&"it is larger than the script's memory limit"));
    }
    String::from_utf8(bytes).map_err(|_| unreadable(&"it is not UTF-8 text"))
}
