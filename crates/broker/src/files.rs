//! Private files: the data directory is `0700` and the SQLite database with its `-wal`
//! and `-shm` files `0600`, because they hold password hashes, the audit log and the
//! targets (issue 7, point 3). Files written whole (the signing key, the TLS key and
//! certificate, `portcullis dev`'s `dev.json` and tunnel token) go through
//! [`write_atomically`].

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::clock::Millis;

/// Mode of the data directory when the broker creates it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the SQLite database and its `-wal` and `-shm` files.
pub const DB_FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode `0700`. An existing directory is left as
/// it is, with a warning when group or others may enter or read it.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(metadata) => {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format_args!("{mode:04o}"),
                    "the data directory is accessible by group or others: run chmod 700 on it"
                );
            }
            Ok(())
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir),
        Err(error) => Err(error),
    }
}

/// Makes the SQLite database at `path` and its `-wal`, `-shm` and `-journal` files private:
/// creates the database file empty with mode `0600` when missing (SQLite gives the
/// files it creates next to it the database file's mode), and sets `0600` on those that
/// exist with a looser mode.
pub fn make_database_private(path: &Path) -> io::Result<()> {
    if let Err(error) = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(DB_FILE_MODE)
        .open(path)
    {
        if error.kind() != io::ErrorKind::AlreadyExists {
            return Err(error);
        }
    }
    for file in database_files(path) {
        let metadata = match fs::metadata(&file) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if metadata.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&file, fs::Permissions::from_mode(DB_FILE_MODE))?;
            tracing::info!(file = %file.display(), "made a database file private (mode 0600)");
        }
    }
    Ok(())
}

/// Whether [`write_atomically`] may replace a file already at its path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Existing {
    /// Replace it (atomically: a reader sees the old file or the new one).
    Replace,
    /// Keep it, and fail with [`io::ErrorKind::AlreadyExists`].
    Keep,
}

/// Writes `contents` to `path` as one step: into a temporary file beside it (created with
/// mode `0600`, then given `mode`), flushed to disk, renamed to `path`, and the directory
/// flushed so that the new name survives a crash. A reader of `path` never sees half a
/// file, and a failure leaves no temporary file behind.
pub fn write_atomically(
    path: &Path,
    contents: &[u8],
    mode: u32,
    existing: Existing,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".portcullis-")
        .tempfile_in(dir)?;
    if mode != 0o600 {
        file.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))?;
    }
    file.write_all(contents)?;
    file.as_file().sync_all()?;
    match existing {
        Existing::Replace => file.persist(path),
        Existing::Keep => file.persist_noclobber(path),
    }
    .map_err(|error| error.error)?;
    fs::File::open(dir)?.sync_all()
}

/// Keeps the file at `path` under a free name beside it, `NAME.<unix-seconds>.old` (or
/// `NAME.<unix-seconds>-<n>.old` when that is taken), as a hard link: the file a key
/// rotation is about to replace stays readable by its operator. `now` is the caller's
/// clock ([`crate::clock`]). A missing `path` is [`io::ErrorKind::NotFound`].
pub fn keep_previous(path: &Path, now: Millis) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?
        .to_string_lossy()
        .into_owned();
    let seconds = now.div_euclid(1000);
    for attempt in 1..=1000u32 {
        let kept = path.with_file_name(match attempt {
            1 => format!("{name}.{seconds}.old"),
            n => format!("{name}.{seconds}-{n}.old"),
        });
        match fs::hard_link(path, &kept) {
            Ok(()) => return Ok(kept),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "1000 kept copies with this time already",
    ))
}

/// The database file and the files SQLite keeps beside it.
fn database_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_owned()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_directory_is_0700_and_an_existing_one_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o755, "only warned about");
    }

    #[test]
    fn files_are_written_whole_with_their_mode_and_kept_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomically(&path, b"one", 0o600, Existing::Keep).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        let error = write_atomically(&path, b"two", 0o600, Existing::Keep).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomically(&path, b"three", 0o644, Existing::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(mode(&path), 0o644);
        // Nothing left beside it.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/dir/file");
        assert!(write_atomically(&missing, b"x", 0o600, Existing::Replace).is_err());
    }

    #[test]
    fn database_files_become_0600() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        make_database_private(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        let wal = dir.path().join("x.db-wal");
        fs::write(&wal, b"").unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        make_database_private(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }
}
