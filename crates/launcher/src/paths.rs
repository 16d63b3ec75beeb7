//! Where the launcher keeps the user's trust file and its log: the platform's per-user
//! configuration and state directories, overridable with `PORTCULLIS_LAUNCHER_HOME` (one
//! directory for both, used by tests and portable installs).

use std::path::PathBuf;

/// The environment variable that overrides both directories.
pub const HOME_ENV: &str = "PORTCULLIS_LAUNCHER_HOME";

/// The launcher's directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirs {
    /// Holds `trust.json`.
    pub config: PathBuf,
    /// Holds `launcher.log`.
    pub state: PathBuf,
}

impl Dirs {
    /// The directories for this user, from the environment.
    pub fn from_env() -> Option<Self> {
        Self::resolve(|name| std::env::var_os(name).map(PathBuf::from))
    }

    /// The directories, reading variables through `var` (tests pass their own).
    pub fn resolve(var: impl Fn(&str) -> Option<PathBuf>) -> Option<Self> {
        if let Some(home) = var(HOME_ENV) {
            return Some(Self {
                config: home.clone(),
                state: home,
            });
        }
        if cfg!(windows) {
            let app_data = var("APPDATA")?.join("Portcullis");
            let local =
                var("LOCALAPPDATA").map_or_else(|| app_data.clone(), |dir| dir.join("Portcullis"));
            return Some(Self {
                config: app_data,
                state: local,
            });
        }
        let home = var("HOME")?;
        if cfg!(target_os = "macos") {
            let support = home.join("Library/Application Support/Portcullis");
            return Some(Self {
                config: support.clone(),
                state: home.join("Library/Logs/Portcullis"),
            });
        }
        let config = var("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
        let state = var("XDG_STATE_HOME").unwrap_or_else(|| home.join(".local/state"));
        Some(Self {
            config: config.join("portcullis"),
            state: state.join("portcullis"),
        })
    }

    /// The trust file.
    pub fn trust_file(&self) -> PathBuf {
        self.config.join("trust.json")
    }

    /// The log file.
    pub fn log_file(&self) -> PathBuf {
        self.state.join("launcher.log")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_override_wins_then_xdg_then_home() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            Dirs::resolve(move |name| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| PathBuf::from(value))
            })
        };
        let portable = with(&[(HOME_ENV, "/p"), ("HOME", "/home/a")]).unwrap();
        assert_eq!(portable.trust_file(), PathBuf::from("/p/trust.json"));
        if cfg!(target_os = "linux") {
            let xdg = with(&[("HOME", "/home/a"), ("XDG_CONFIG_HOME", "/c")]).unwrap();
            assert_eq!(xdg.trust_file(), PathBuf::from("/c/portcullis/trust.json"));
            assert_eq!(
                xdg.log_file(),
                PathBuf::from("/home/a/.local/state/portcullis/launcher.log")
            );
        }
        assert!(with(&[]).is_none());
    }
}
