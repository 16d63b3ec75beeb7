//! The schema migrations, embedded in the binary: one folder per backend, same tables.
//!
//! Migrations live in `crates/broker/migrations/{sqlite,postgres}/NNNN_description.sql`
//! (the layout of `sqlx migrate`). They are listed here by hand and embedded with
//! `include_str!`, so a migration is versioned with the code that reads its tables; a unit
//! test checks that the list matches both folders.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::Backend;

/// One embedded migration: version, description, SQLite text, PostgreSQL text.
#[derive(Debug)]
struct Embedded {
    version: i64,
    description: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Every migration, oldest first. Never edit a released one: add a new file to both folders.
const MIGRATIONS: &[Embedded] = &[
    Embedded {
        version: 1,
        description: "initial",
        sqlite: include_str!("../../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../../migrations/postgres/0001_initial.sql"),
    },
    Embedded {
        version: 2,
        description: "service_readiness",
        sqlite: include_str!("../../migrations/sqlite/0002_service_readiness.sql"),
        postgres: include_str!("../../migrations/postgres/0002_service_readiness.sql"),
    },
    Embedded {
        version: 3,
        description: "connection_history",
        sqlite: include_str!("../../migrations/sqlite/0003_connection_history.sql"),
        postgres: include_str!("../../migrations/postgres/0003_connection_history.sql"),
    },
    Embedded {
        version: 4,
        description: "oidc_users",
        sqlite: include_str!("../../migrations/sqlite/0004_oidc_users.sql"),
        postgres: include_str!("../../migrations/postgres/0004_oidc_users.sql"),
    },
    Embedded {
        version: 5,
        description: "operators",
        sqlite: include_str!("../../migrations/sqlite/0005_operators.sql"),
        postgres: include_str!("../../migrations/postgres/0005_operators.sql"),
    },
    Embedded {
        version: 6,
        description: "credentials",
        sqlite: include_str!("../../migrations/sqlite/0006_credentials.sql"),
        postgres: include_str!("../../migrations/postgres/0006_credentials.sql"),
    },
];

/// How many migrations there are.
pub(super) const COUNT: usize = MIGRATIONS.len();

/// Embedded migrations of one backend, as a source for sqlx's [`Migrator`].
#[derive(Debug)]
struct Source {
    backend: Backend,
    migrations: &'static [Embedded],
}

impl<'s> MigrationSource<'s> for Source {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let migrations = self
            .migrations
            .iter()
            .map(|m| {
                let sql = match self.backend {
                    Backend::Sqlite => m.sqlite,
                    Backend::Postgres => m.postgres,
                };
                Migration::new(
                    m.version,
                    Cow::Borrowed(m.description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// The migrator for `backend`.
pub(super) async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Source {
        backend,
        migrations: MIGRATIONS,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_matches_both_folders() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let expected: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.description))
            .collect();
        for folder in ["sqlite", "postgres"] {
            let mut files: Vec<String> = std::fs::read_dir(root.join(folder))
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            assert_eq!(files, expected, "migrations/{folder} and MIGRATIONS differ");
        }
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version, "versions must ascend");
        }
    }

    /// A database made by the first release upgrades in place, and its services keep the
    /// behaviour they had (the broker checks their readiness).
    #[tokio::test]
    async fn a_version_1_database_upgrades() {
        use sqlx::any::AnyPoolOptions;

        use crate::config::DatabaseUrl;
        use crate::store::{Readiness, Store};

        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::sqlite(&dir.path().join("old.db"));
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(url.expose())
            .await
            .unwrap();
        let first = Migrator::new(Source {
            backend: Backend::Sqlite,
            migrations: &MIGRATIONS[..1],
        })
        .await
        .unwrap();
        first.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO services (name, host, port, protocol, transport, max_session_secs, \
             created_at) VALUES ('desk', '10.0.0.7', 3389, 'rdp', 'direct', 3600, 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = Store::connect(url.expose()).await.unwrap();
        let desk = store.service_by_name("desk").await.unwrap().unwrap();
        assert_eq!(desk.readiness, Readiness::Tcp);
    }
}
