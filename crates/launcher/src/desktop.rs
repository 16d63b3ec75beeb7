//! Registering the launcher as the current user's handler of `udssv2://` links on Linux:
//! a `.desktop` file in `$XDG_DATA_HOME/applications` (default `~/.local/share`) and
//! `xdg-mime default` when it is installed. Windows and macOS: docs/launcher.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The desktop entry's file name.
pub const DESKTOP_FILE: &str = "portcullis-launcher.desktop";
/// The link scheme's MIME type.
pub const MIME_TYPE: &str = "x-scheme-handler/udssv2";

/// Where the desktop entry goes, from `XDG_DATA_HOME` or `HOME`.
pub fn applications_dir(var: impl Fn(&str) -> Option<PathBuf>) -> Option<PathBuf> {
    var("XDG_DATA_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".local/share")))
        .map(|data| data.join("applications"))
}

/// The desktop entry that runs `executable` with the link.
pub fn desktop_entry(executable: &Path) -> String {
    // Desktop entry Exec quoting: double quotes around the path, with `"`, `` ` ``, `$`
    // and `\` escaped, and `%` doubled (else `%u` in a directory name is a field code).
    let mut quoted = String::from("\"");
    for c in executable.display().to_string().chars() {
        match c {
            '"' | '`' | '$' | '\\' => quoted.push('\\'),
            '%' => quoted.push('%'),
            _ => {}
        }
        quoted.push(c);
    }
    quoted.push('"');
    format!(
        "[Desktop Entry]\nType=Application\nName=Portcullis launcher\n\
         Comment=Opens Portcullis remote connections (udssv2:// links)\n\
         Exec={quoted} %u\nTerminal=false\nNoDisplay=true\nMimeType={MIME_TYPE};\n"
    )
}

/// Writes the desktop entry into `dir` and makes it the default handler when `xdg-mime` is
/// installed. Returns the entry's path and whether `xdg-mime` was run.
pub fn register(dir: &Path, executable: &Path) -> std::io::Result<(PathBuf, bool)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(DESKTOP_FILE);
    std::fs::write(&path, desktop_entry(executable))?;
    let registered = run("xdg-mime", &["default", DESKTOP_FILE, MIME_TYPE]);
    let _ = run("update-desktop-database", &[dir.to_string_lossy().as_ref()]);
    Ok((path, registered))
}

/// Removes the desktop entry; whether there was one.
pub fn unregister(dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(dir.join(DESKTOP_FILE)) {
        Ok(()) => {
            let _ = run("update-desktop-database", &[dir.to_string_lossy().as_ref()]);
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Runs a helper program if it is installed; whether it succeeded.
fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_handles_udssv2_links_with_a_quoted_path() {
        let entry = desktop_entry(Path::new("/opt/my \"apps\"/portcullis-launcher"));
        assert!(entry.contains("Exec=\"/opt/my \\\"apps\\\"/portcullis-launcher\" %u\n"));
        assert!(entry.contains("MimeType=x-scheme-handler/udssv2;\n"));
    }

    #[test]
    fn a_percent_in_the_path_is_not_a_field_code() {
        let entry = desktop_entry(Path::new("/opt/100%u sure/portcullis-launcher"));
        assert!(
            entry.contains("Exec=\"/opt/100%%u sure/portcullis-launcher\" %u\n"),
            "{entry}"
        );
    }

    #[test]
    fn register_writes_and_unregister_removes_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let applications = dir.path().join("applications");
        let (path, _) = register(&applications, Path::new("/usr/bin/portcullis-launcher")).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("%u"));
        assert!(unregister(&applications).unwrap());
        assert!(!unregister(&applications).unwrap());
    }

    #[test]
    fn the_directory_follows_xdg() {
        let xdg = applications_dir(|name| (name == "XDG_DATA_HOME").then(|| "/d".into()));
        assert_eq!(xdg, Some(PathBuf::from("/d/applications")));
        let home = applications_dir(|name| (name == "HOME").then(|| "/h".into()));
        assert_eq!(home, Some(PathBuf::from("/h/.local/share/applications")));
    }
}
