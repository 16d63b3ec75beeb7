//! Where a script's credentials go instead of a command line (docs/launcher-scripts.md §5):
//! `Portcullis.sshIdentity()`, the launch's SSH key and certificate, and
//! `Portcullis.vncPasswordFile()`, a VNC viewer's password file, as files in private
//! directories removed at the launcher's end.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rquickjs::{Ctx, Object, Value};

use super::js::throw;
use super::state::Shared;

/// The file names inside the identity's directory (`ssh` finds `<key>-cert.pub` by itself
/// too).
const KEY_FILE: &str = "id_ed25519";
const CERTIFICATE_FILE: &str = "id_ed25519-cert.pub";

/// `Portcullis.sshIdentity()`: `{identityFile, certificateFile}`, or `null` when params
/// hold no certificate for this launch's key.
pub(super) fn ssh_identity<'js>(ctx: &Ctx<'js>, shared: &Shared) -> rquickjs::Result<Value<'js>> {
    if let Some((key, certificate)) = shared.tables().ssh_identity.clone() {
        return identity_object(ctx, &key, &certificate);
    }
    let data: Object<'js> = ctx.globals().get("data")?;
    let Some(line) = data.get::<_, Option<String>>("ssh_certificate")? else {
        return Ok(Value::new_null(ctx.clone()));
    };
    let Some(pair) = shared.host.ssh_key() else {
        return Ok(Value::new_null(ctx.clone()));
    };
    if !pair.certifies(&line) {
        tracing::warn!(target: "script", "the SSH certificate is not for this launch's key");
        return Ok(Value::new_null(ctx.clone()));
    }
    let private = pair.private_openssh().map_err(|error| throw(ctx, &error))?;
    // Registered for removal first, so that a failure below still removes what was written.
    let dir = private_dir(ctx, shared, "portcullis-ssh-")?;
    let key = dir.join(KEY_FILE);
    let certificate = dir.join(CERTIFICATE_FILE);
    write_private(&key, private.as_bytes())
        .and_then(|()| write_private(&certificate, format!("{line}\n").as_bytes()))
        .map_err(|error| throw(ctx, &format!("The SSH key could not be written: {error}")))?;
    tracing::debug!(target: "script", dir = %dir.display(), "SSH identity written");
    shared.tables().ssh_identity = Some((key.clone(), certificate.clone()));
    identity_object(ctx, &key, &certificate)
}

/// `Portcullis.vncPasswordFile(password)`: a TigerVNC password file (0600, in a 0700
/// directory removed at the end) for `password`; its path.
pub(super) fn vnc_password_file(
    ctx: &Ctx<'_>,
    shared: &Shared,
    password: &str,
) -> rquickjs::Result<String> {
    let dir = private_dir(ctx, shared, "portcullis-vnc-")?;
    let file = dir.join("passwd");
    write_private(&file, &*crate::vnc_password::password_file(password)).map_err(|error| {
        throw(
            ctx,
            &format!("The VNC password file could not be written: {error}"),
        )
    })?;
    Ok(file.to_string_lossy().into_owned())
}

/// A new directory only the user may enter, removed when the launcher ends.
fn private_dir(ctx: &Ctx<'_>, shared: &Shared, prefix: &str) -> rquickjs::Result<PathBuf> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let dir = builder
        .tempdir()
        .map_err(|error| throw(ctx, &format!("No private directory: {error}")))?
        .keep();
    shared.tables().temp_dirs.push(dir.clone());
    Ok(dir)
}

fn identity_object<'js>(
    ctx: &Ctx<'js>,
    key: &Path,
    certificate: &Path,
) -> rquickjs::Result<Value<'js>> {
    let object = Object::new(ctx.clone())?;
    object.set("identityFile", key.to_string_lossy().into_owned())?;
    object.set(
        "certificateFile",
        certificate.to_string_lossy().into_owned(),
    )?;
    Ok(object.into_value())
}

/// Creates `path` (never replacing a file) readable by the user alone, with `contents`.
fn write_private(path: &PathBuf, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
