//! Services (what users connect to), the groups allowed to use them, and tunnel servers.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::live::{Revoked, revoke_lost_access};
use super::users::check_name;
use super::{
    Protocol, Readiness, ServiceId, Store, StoreError, TokenHash, Transport, TunnelServerId,
    UserId, corrupt,
};

/// A service to add.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewService {
    /// Unique name shown in the portal.
    pub name: String,
    /// Target host name or address.
    pub host: String,
    /// Target TCP port (not 0).
    pub port: u16,
    /// What the target speaks.
    pub protocol: Protocol,
    /// Direct, or through a tunnel server.
    pub transport: Transport,
    /// The tunnel group whose servers carry a tunneled service; `None` for direct ones.
    pub tunnel_group: Option<String>,
    /// Longest session, in seconds (not 0).
    pub max_session_secs: u32,
    /// Whether exchanges first check that the target accepts TCP connections.
    pub readiness: Readiness,
    /// Names of the groups whose members may use the service (existing groups).
    pub allowed_groups: Vec<String>,
}

/// A stored service.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Service {
    /// Row id.
    pub id: ServiceId,
    /// Unique name.
    pub name: String,
    /// Target host name or address.
    pub host: String,
    /// Target TCP port.
    pub port: u16,
    /// What the target speaks.
    pub protocol: Protocol,
    /// Direct, or through a tunnel server.
    pub transport: Transport,
    /// The tunnel group of a tunneled service.
    pub tunnel_group: Option<String>,
    /// Longest session, in seconds.
    pub max_session_secs: u32,
    /// Whether exchanges first check that the target accepts TCP connections.
    pub readiness: Readiness,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Names of the groups allowed to use it, sorted.
    pub allowed_groups: Vec<String>,
}

/// A tunnel server to register.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewTunnelServer {
    /// Unique name.
    pub name: String,
    /// `host:port` launchers connect to.
    pub public_address: String,
    /// Hash of the server's bearer token (`TokenHash::of` the token it will present).
    pub token_hash: TokenHash,
    /// An OpenUDS 5 tunnel server: may redeem tickets without a handshake proof.
    pub legacy: bool,
    /// The tunnel group it serves.
    pub group: String,
}

/// A registered tunnel server.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TunnelServer {
    /// Row id.
    pub id: TunnelServerId,
    /// Unique name.
    pub name: String,
    /// `host:port` launchers connect to.
    pub public_address: String,
    /// An OpenUDS 5 tunnel server (no handshake proof).
    pub legacy: bool,
    /// The tunnel group it serves.
    pub group: String,
    /// Registration time, Unix milliseconds.
    pub created_at: i64,
    /// Its last call to the broker (`start`, `stop` or a control request).
    pub last_seen_at: Option<i64>,
    /// Its last control request (docs/protocol.md §7.8): its sessions can be ended from
    /// the broker while this is recent.
    pub control_seen_at: Option<i64>,
}

const SERVICE_COLUMNS: &str = "services.id, services.name, services.host, services.port, \
     services.protocol, services.transport, services.tunnel_group, \
     services.max_session_secs, services.readiness, services.created_at";

const TUNNEL_SERVER_COLUMNS: &str = "id, name, public_address, legacy, tunnel_group, \
     created_at, last_seen_at, control_seen_at";

/// A service's target: a host without spaces (1 to 253 characters) and a port other than 0.
fn check_target(host: &str, port: u16) -> Result<(), StoreError> {
    if host.is_empty() || host.len() > 253 || host.contains(char::is_whitespace) {
        return Err(StoreError::Invalid(
            "host must be 1 to 253 characters without spaces".to_owned(),
        ));
    }
    if port == 0 {
        return Err(StoreError::Invalid("port must not be 0".to_owned()));
    }
    Ok(())
}

impl NewService {
    fn check(&self) -> Result<(), StoreError> {
        check_name("service name", &self.name)?;
        check_target(&self.host, self.port)?;
        if self.max_session_secs == 0 {
            return Err(StoreError::Invalid(
                "max_session_secs must not be 0".to_owned(),
            ));
        }
        match (self.transport, &self.tunnel_group) {
            (Transport::Tunneled, None) => Err(StoreError::Invalid(
                "a tunneled service needs a tunnel group".to_owned(),
            )),
            (Transport::Tunneled, Some(group)) => check_name("tunnel group", group),
            (Transport::Direct, Some(_)) => Err(StoreError::Invalid(
                "a direct service has no tunnel group".to_owned(),
            )),
            (Transport::Direct, None) => Ok(()),
        }
    }
}

/// The service of a client ticket, as the exchange needs it (without its allowed groups).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExchangeService {
    /// Row id.
    pub id: ServiceId,
    /// Unique name.
    pub name: String,
    /// Target host name or address.
    pub host: String,
    /// Target TCP port.
    pub port: u16,
    /// What the target speaks.
    pub protocol: Protocol,
    /// Direct, or through a tunnel server.
    pub transport: Transport,
    /// The tunnel group of a tunneled service.
    pub tunnel_group: Option<String>,
    /// Longest session, in seconds.
    pub max_session_secs: u32,
    /// Whether the exchange first checks that the target accepts TCP connections.
    pub readiness: Readiness,
}

/// The names of a service's columns in a result row: plain, or prefixed where a query
/// joins services to tables with columns of the same names.
pub(super) struct ServiceColumns {
    pub(super) id: &'static str,
    pub(super) name: &'static str,
    pub(super) host: &'static str,
    pub(super) port: &'static str,
    pub(super) protocol: &'static str,
    pub(super) transport: &'static str,
    pub(super) tunnel_group: &'static str,
    pub(super) max_session_secs: &'static str,
    pub(super) readiness: &'static str,
}

/// The columns of [`SERVICE_COLUMNS`].
const PLAIN_SERVICE_COLUMNS: ServiceColumns = ServiceColumns {
    id: "id",
    name: "name",
    host: "host",
    port: "port",
    protocol: "protocol",
    transport: "transport",
    tunnel_group: "tunnel_group",
    max_session_secs: "max_session_secs",
    readiness: "readiness",
};

/// Reads and checks a service's columns (named by `columns`) from `row`.
pub(super) fn exchange_service_from_row(
    row: &AnyRow,
    columns: &ServiceColumns,
) -> Result<ExchangeService, StoreError> {
    let port: i64 = row.try_get(columns.port)?;
    let protocol: String = row.try_get(columns.protocol)?;
    let transport: String = row.try_get(columns.transport)?;
    let max_session_secs: i64 = row.try_get(columns.max_session_secs)?;
    let readiness: String = row.try_get(columns.readiness)?;
    Ok(ExchangeService {
        id: ServiceId(row.try_get(columns.id)?),
        name: row.try_get(columns.name)?,
        host: row.try_get(columns.host)?,
        port: u16::try_from(port).map_err(|_| corrupt("services", "port out of range"))?,
        protocol: protocol
            .parse()
            .map_err(|_| corrupt("services", "unknown protocol"))?,
        transport: transport
            .parse()
            .map_err(|_| corrupt("services", "unknown transport"))?,
        tunnel_group: row.try_get(columns.tunnel_group)?,
        max_session_secs: u32::try_from(max_session_secs)
            .map_err(|_| corrupt("services", "max_session_secs out of range"))?,
        readiness: readiness
            .parse()
            .map_err(|_| corrupt("services", "unknown readiness"))?,
    })
}

fn service_from_row(row: &AnyRow, groups: Vec<String>) -> Result<Service, StoreError> {
    let ExchangeService {
        id,
        name,
        host,
        port,
        protocol,
        transport,
        tunnel_group,
        max_session_secs,
        readiness,
    } = exchange_service_from_row(row, &PLAIN_SERVICE_COLUMNS)?;
    Ok(Service {
        id,
        name,
        host,
        port,
        protocol,
        transport,
        tunnel_group,
        max_session_secs,
        readiness,
        created_at: row.try_get("created_at")?,
        allowed_groups: groups,
    })
}

fn tunnel_server_from_row(row: &AnyRow) -> Result<TunnelServer, StoreError> {
    let legacy: i64 = row.try_get("legacy")?;
    Ok(TunnelServer {
        id: TunnelServerId(row.try_get("id")?),
        name: row.try_get("name")?,
        public_address: row.try_get("public_address")?,
        legacy: legacy != 0,
        group: row.try_get("tunnel_group")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        control_seen_at: row.try_get("control_seen_at")?,
    })
}

impl Store {
    /// Adds a service and grants it to its allowed groups, in one transaction.
    pub async fn add_service(&self, new: NewService, now: i64) -> Result<ServiceId, StoreError> {
        new.check()?;
        let mut groups = new.allowed_groups.clone();
        groups.sort();
        groups.dedup();

        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO services \
             (name, host, port, protocol, transport, tunnel_group, max_session_secs, \
             readiness, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&new.name)
        .bind(&new.host)
        .bind(i64::from(new.port))
        .bind(new.protocol.as_str())
        .bind(new.transport.as_str())
        .bind(new.tunnel_group.as_deref())
        .bind(i64::from(new.max_session_secs))
        .bind(new.readiness.as_str())
        .bind(now)
        .fetch_one(tx.conn())
        .await
        .map_err(|e| StoreError::unique(e, || format!("service {:?} already exists", new.name)))?;
        let id: i64 = row.try_get("id")?;
        for group in &groups {
            let done = sqlx::query(
                "INSERT INTO service_groups (service_id, group_id) \
                 SELECT $1, id FROM groups WHERE name = $2",
            )
            .bind(id)
            .bind(group)
            .execute(tx.conn())
            .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Err(StoreError::NotFound("group"));
            }
        }
        tx.commit().await?;
        Ok(ServiceId(id))
    }

    /// The allowed groups of every service (or of one), by service id.
    async fn service_groups(
        &self,
        only: Option<i64>,
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        let rows = sqlx::query(
            "SELECT service_groups.service_id, groups.name FROM service_groups \
             JOIN groups ON groups.id = service_groups.group_id \
             WHERE $1 IS NULL OR service_groups.service_id = $1 \
             ORDER BY groups.name",
        )
        .bind(only)
        .fetch_all(self.pool())
        .await?;
        let mut map: HashMap<i64, Vec<String>> = HashMap::new();
        for row in &rows {
            map.entry(row.try_get("service_id")?)
                .or_default()
                .push(row.try_get("name")?);
        }
        Ok(map)
    }

    /// Attaches allowed groups to service rows.
    async fn services_from_rows(&self, rows: &[AnyRow]) -> Result<Vec<Service>, StoreError> {
        let only = match rows {
            [row] => Some(row.try_get::<i64, _>("id")?),
            _ => None,
        };
        let mut groups = if rows.is_empty() {
            HashMap::new()
        } else {
            self.service_groups(only).await?
        };
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                service_from_row(row, groups.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    /// Every service, by name, with its allowed groups.
    pub async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        let sql = format!("SELECT {SERVICE_COLUMNS} FROM services ORDER BY services.name");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        self.services_from_rows(&rows).await
    }

    /// The service with row id `id`.
    pub async fn service_by_id(&self, id: ServiceId) -> Result<Option<Service>, StoreError> {
        let sql = format!("SELECT {SERVICE_COLUMNS} FROM services WHERE services.id = $1");
        let rows = sqlx::query(&sql).bind(id.0).fetch_all(self.pool()).await?;
        Ok(self.services_from_rows(&rows).await?.pop())
    }

    /// The service named `name`.
    pub async fn service_by_name(&self, name: &str) -> Result<Option<Service>, StoreError> {
        let sql = format!("SELECT {SERVICE_COLUMNS} FROM services WHERE services.name = $1");
        let rows = sqlx::query(&sql).bind(name).fetch_all(self.pool()).await?;
        Ok(self.services_from_rows(&rows).await?.pop())
    }

    /// Removes a service, its grants and its unused tickets, and asks for the end of its
    /// live sessions (which outlive the row, to be accounted).
    pub async fn remove_service(&self, name: &str, now: i64) -> Result<Revoked, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM services WHERE name = $1")
            .bind(name)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound("service"));
        }
        let revoked = revoke_lost_access(tx.conn(), now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Changes every setting of service `id` to `new`'s (its name, target, protocol,
    /// transport, tunnel group, maximum duration, readiness and allowed groups), in one
    /// transaction; what users lose access to is revoked. Live sessions keep their target.
    pub async fn update_service(
        &self,
        id: ServiceId,
        new: NewService,
        now: i64,
    ) -> Result<Revoked, StoreError> {
        new.check()?;
        let mut groups = new.allowed_groups.clone();
        groups.sort();
        groups.dedup();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE services SET name = $1, host = $2, port = $3, protocol = $4, \
             transport = $5, tunnel_group = $6, max_session_secs = $7, readiness = $8 \
             WHERE id = $9",
        )
        .bind(&new.name)
        .bind(&new.host)
        .bind(i64::from(new.port))
        .bind(new.protocol.as_str())
        .bind(new.transport.as_str())
        .bind(new.tunnel_group.as_deref())
        .bind(i64::from(new.max_session_secs))
        .bind(new.readiness.as_str())
        .bind(id.0)
        .execute(tx.conn())
        .await
        .map_err(|e| StoreError::unique(e, || format!("service {:?} already exists", new.name)))?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound("service"));
        }
        sqlx::query("DELETE FROM service_groups WHERE service_id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        for group in &groups {
            let done = sqlx::query(
                "INSERT INTO service_groups (service_id, group_id) \
                 SELECT $1, id FROM groups WHERE name = $2",
            )
            .bind(id.0)
            .bind(group)
            .execute(tx.conn())
            .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Err(StoreError::NotFound("group"));
            }
        }
        let revoked = revoke_lost_access(tx.conn(), now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Points a service at another target in place: its id, grants and unexpired tickets
    /// stay. Only `host` and `port` change.
    pub async fn update_service_target(
        &self,
        id: ServiceId,
        host: &str,
        port: u16,
    ) -> Result<(), StoreError> {
        check_target(host, port)?;
        let mut writer = self.writer().await?;
        let done = sqlx::query("UPDATE services SET host = $1, port = $2 WHERE id = $3")
            .bind(host)
            .bind(i64::from(port))
            .bind(id.0)
            .execute(writer.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("service"));
        }
        Ok(())
    }

    /// The services `user` may use (those granted to any of their groups), by name.
    pub async fn services_for_user(&self, user: UserId) -> Result<Vec<Service>, StoreError> {
        let sql = format!(
            "SELECT {SERVICE_COLUMNS} FROM services WHERE EXISTS ( \
                 SELECT 1 FROM service_groups \
                 JOIN user_groups ON user_groups.group_id = service_groups.group_id \
                 WHERE service_groups.service_id = services.id AND user_groups.user_id = $1) \
             ORDER BY services.name"
        );
        let rows = sqlx::query(&sql)
            .bind(user.0)
            .fetch_all(self.pool())
            .await?;
        self.services_from_rows(&rows).await
    }

    /// Whether `user` belongs to a group allowed to use `service`.
    pub async fn user_may_use_service(
        &self,
        user: UserId,
        service: ServiceId,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS allowed FROM service_groups \
             JOIN user_groups ON user_groups.group_id = service_groups.group_id \
             WHERE user_groups.user_id = $1 AND service_groups.service_id = $2 LIMIT 1",
        )
        .bind(user.0)
        .bind(service.0)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Registers a tunnel server.
    pub async fn add_tunnel_server(
        &self,
        new: NewTunnelServer,
        now: i64,
    ) -> Result<TunnelServerId, StoreError> {
        check_name("tunnel server name", &new.name)?;
        check_name("tunnel group", &new.group)?;
        if new.public_address.is_empty() || new.public_address.contains(char::is_whitespace) {
            return Err(StoreError::Invalid(
                "public address must be a non-empty host:port".to_owned(),
            ));
        }
        let mut writer = self.writer().await?;
        let inserted = sqlx::query(
            "INSERT INTO tunnel_servers \
             (name, public_address, token_hash, legacy, tunnel_group, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&new.name)
        .bind(&new.public_address)
        .bind(new.token_hash.as_bytes().as_slice())
        .bind(i64::from(new.legacy))
        .bind(&new.group)
        .bind(now)
        .fetch_one(writer.conn())
        .await;
        drop(writer);
        match inserted {
            Ok(row) => Ok(TunnelServerId(row.try_get("id")?)),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                let taken = sqlx::query("SELECT id FROM tunnel_servers WHERE name = $1")
                    .bind(&new.name)
                    .fetch_optional(self.pool())
                    .await?;
                Err(StoreError::Conflict(if taken.is_some() {
                    format!("tunnel server {:?} already exists", new.name)
                } else {
                    "this token is already registered to another tunnel server".to_owned()
                }))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The tunnel server that presented the token with this hash.
    pub async fn tunnel_server_by_token_hash(
        &self,
        token: &TokenHash,
    ) -> Result<Option<TunnelServer>, StoreError> {
        let sql =
            format!("SELECT {TUNNEL_SERVER_COLUMNS} FROM tunnel_servers WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(tunnel_server_from_row).transpose()
    }

    /// The tunnel server named `name`.
    pub async fn tunnel_server_by_name(
        &self,
        name: &str,
    ) -> Result<Option<TunnelServer>, StoreError> {
        let sql = format!("SELECT {TUNNEL_SERVER_COLUMNS} FROM tunnel_servers WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(tunnel_server_from_row).transpose()
    }

    /// Replaces the token of the tunnel server named `name` (its hash): the old token stops
    /// working at once.
    pub async fn set_tunnel_server_token(
        &self,
        name: &str,
        token_hash: &TokenHash,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("UPDATE tunnel_servers SET token_hash = $1 WHERE name = $2")
            .bind(token_hash.as_bytes().as_slice())
            .bind(name)
            .execute(writer.conn())
            .await
            .map_err(|e| StoreError::unique(e, || "this token is already registered".to_owned()))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("tunnel server"));
        }
        Ok(())
    }

    /// Every tunnel server, by name.
    pub async fn list_tunnel_servers(&self) -> Result<Vec<TunnelServer>, StoreError> {
        let sql = format!("SELECT {TUNNEL_SERVER_COLUMNS} FROM tunnel_servers ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(tunnel_server_from_row).collect()
    }

    /// The tunnel servers of a tunnel group, by name.
    pub async fn tunnel_servers_in_group(
        &self,
        group: &str,
    ) -> Result<Vec<TunnelServer>, StoreError> {
        let sql = format!(
            "SELECT {TUNNEL_SERVER_COLUMNS} FROM tunnel_servers \
             WHERE tunnel_group = $1 ORDER BY name"
        );
        let rows = sqlx::query(&sql).bind(group).fetch_all(self.pool()).await?;
        rows.iter().map(tunnel_server_from_row).collect()
    }

    /// Unregisters a tunnel server; its token stops working at once.
    pub async fn remove_tunnel_server(&self, name: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM tunnel_servers WHERE name = $1")
            .bind(name)
            .execute(writer.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("tunnel server"));
        }
        Ok(())
    }
}
