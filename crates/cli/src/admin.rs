//! `portcullis admin …`: manage a broker's database directly (SQLite file or PostgreSQL),
//! with the same configuration file as the broker. Passwords are read from stdin; a new
//! tunnel server's token is printed once and stored only as a hash.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use portcullis_broker::admin::{self as actions, Actor};
use portcullis_broker::clock::Clock;
use portcullis_broker::config::BrokerConfig;
use portcullis_broker::credentials::{self, KeySource, ssh_ca, ssh_ca::SshCa};
use portcullis_broker::keys;
use portcullis_broker::model::{Protocol, Transport};
use portcullis_broker::password::{hash_password, read_password};
use portcullis_broker::proto::credential::CredentialKey;
use portcullis_broker::store::{
    CredentialMode, NewService, Readiness, Revoked, ServiceCredentials, Store, StoreOptions,
};

/// Options shared by every admin command.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The broker's configuration file (its data_dir and database_url are used).
    #[arg(long, short, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The data directory, when no configuration file is given.
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        default_value = "./portcullis-data"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Users (passwords are read from stdin, one line).
    #[command(subcommand)]
    User(UserCommand),
    /// Groups and their members.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Services users can connect to.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Tunnel servers allowed to redeem tunnel tickets.
    #[command(subcommand)]
    Tunnel(TunnelCommand),
    /// The broker's ML-DSA-65 signing key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The key that seals stored service passwords.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// The SSH user CA that signs per-connection certificates.
    #[command(name = "ssh-ca", subcommand)]
    SshCa(SshCaCommand),
}

#[derive(Debug, Subcommand)]
enum CredentialsCommand {
    /// Make a new credential key and re-seal every stored password under it, in one
    /// transaction (the old key file is kept beside it; with credentials.key_env the new
    /// key is printed for you to set).
    RotateKey,
}

#[derive(Debug, Subcommand)]
enum SshCaCommand {
    /// Create the SSH user CA (Ed25519, the private key 0600 in the data directory);
    /// refuses to replace one unless --force.
    Init {
        /// Replace an existing CA (every sshd must then trust the new public key).
        #[arg(long)]
        force: bool,
    },
    /// Print the CA's public key line, for sshd's TrustedUserCAKeys.
    Show,
}

/// The credential modes `set-credentials` takes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModeArg {
    /// The portal user's own user name and password.
    PassThrough,
    /// A service account: --username (and --domain), the password read from stdin.
    Stored,
    /// A short-lived SSH certificate for the launcher's own key.
    SshCertificate,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from stdin.
    Add {
        /// Login name.
        name: String,
        /// Groups to join (repeatable).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// List users: name, groups, how they sign in (`password` or `oidc:<provider>`), and
    /// `disabled` for a disabled account.
    List,
    /// Disable a user: their sign-ins (password or OpenID Connect) are refused, their portal
    /// sessions end, their unredeemed tickets are cancelled and their live connections end
    /// within a second (brokers deliver the end to the tunnel servers).
    Disable {
        /// Login name.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// Login name.
        name: String,
    },
    /// Remove a user (and their sessions; their live connections end).
    Remove {
        /// Login name.
        name: String,
    },
    /// Set a user's password, read from stdin.
    Passwd {
        /// Login name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Add a group.
    Add {
        /// Group name.
        name: String,
    },
    /// List groups and their members.
    List,
    /// Remove a group (its members lose the services it granted, live connections too).
    Remove {
        /// Group name.
        name: String,
    },
    /// Add a user to a group.
    AddMember {
        /// Group name.
        group: String,
        /// Login name.
        user: String,
    },
    /// Remove a user from a group (their live connections to services they no longer may
    /// use end).
    RemoveMember {
        /// Group name.
        group: String,
        /// Login name.
        user: String,
    },
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Add a service.
    Add {
        /// Service name shown to users.
        name: String,
        /// Target host (name or address) as the broker and tunnel server see it.
        #[arg(long)]
        host: String,
        /// Target TCP port.
        #[arg(long)]
        port: u16,
        /// rdp, ssh, vnc or tcp.
        #[arg(long)]
        protocol: Protocol,
        /// direct (the launcher connects itself) or tunneled (through a tunnel server).
        #[arg(long, default_value = "direct")]
        transport: Transport,
        /// The tunnel group whose servers carry a tunneled service.
        #[arg(long, value_name = "GROUP")]
        tunnel_group: Option<String>,
        /// Groups allowed to use the service (repeatable).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Longest session in seconds.
        #[arg(long, default_value_t = 8 * 3600)]
        max_session_secs: u32,
        /// tcp: until the target accepts a TCP connection from the broker, launchers get
        /// "Preparing service" and retry; off: no check, for targets the broker cannot
        /// reach (a tunneled service in a network only its tunnel servers reach).
        #[arg(long, default_value = "tcp")]
        readiness: Readiness,
    },
    /// List services.
    List,
    /// Remove a service (its live connections end).
    Remove {
        /// Service name.
        name: String,
    },
    /// Sign users in on the service: pass-through (rdp, vnc: the portal user's password),
    /// stored (rdp, vnc: a service account; the password is read from stdin, never an
    /// argument) or ssh-certificate (ssh).
    SetCredentials {
        /// Service name.
        name: String,
        /// The credential mode.
        #[arg(long)]
        mode: ModeArg,
        /// stored: the account's user name.
        #[arg(long)]
        username: Option<String>,
        /// pass-through, stored: the account's domain.
        #[arg(long)]
        domain: Option<String>,
        /// ssh-certificate: the principal, `{username}` standing for the portal user's name
        /// (default `{username}`).
        #[arg(long, value_name = "TEMPLATE")]
        ssh_principal: Option<String>,
        /// ssh-certificate: the certificate's source-address restriction: `client` (the
        /// launcher's address as the broker sees it; the default for direct services),
        /// `none` (the default for tunneled services) or addresses and networks,
        /// comma-separated (a tunneled service's tunnel servers).
        #[arg(long, value_name = "ADDRESSES")]
        ssh_source_address: Option<String>,
    },
    /// Stop signing users in on the service (mode none; a stored password is deleted).
    ClearCredentials {
        /// Service name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TunnelCommand {
    /// Register a tunnel server; prints its token once.
    Add {
        /// Tunnel server name.
        name: String,
        /// host:port launchers connect to.
        #[arg(long)]
        address: String,
        /// The tunnel group it serves.
        #[arg(long, default_value = "default")]
        group: String,
        /// An OpenUDS 5 tunnel server (redeems tickets without a handshake proof).
        #[arg(long)]
        legacy: bool,
    },
    /// List tunnel servers (name, address, group, legacy, last seen).
    List,
    /// Give a tunnel server a new token (printed once); the old one stops working at once.
    RotateToken {
        /// Tunnel server name.
        name: String,
    },
    /// Remove a tunnel server (its token stops working at once).
    Remove {
        /// Tunnel server name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create the signing key (refuses to replace one unless --force, which keeps the
    /// old key file beside it).
    Init {
        /// Replace an existing key (launchers that pinned the old key must be updated).
        #[arg(long)]
        force: bool,
    },
    /// Print the public key (base64 of the raw 1952 bytes) and its fingerprint.
    Show,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the newest audit events, one JSON object a line (oldest first).
    Tail {
        /// How many events.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Keep printing new events as they arrive (Ctrl-C stops).
        #[arg(long, short)]
        follow: bool,
    },
    /// Delete events older than a number of days (the broker never prunes the log itself;
    /// safe while it runs).
    Prune {
        /// Keep this many days of events.
        #[arg(long, value_name = "DAYS")]
        older_than_days: u32,
    },
    /// Print every event since a time, oldest first, one a line, in the export's schema
    /// (docs/broker.md, "Audit export"): to fill a SIEM after an outage of the live export,
    /// or to load it for the first time.
    Export {
        /// The first time to include: a date (2026-12-01, UTC), an RFC 3339 time
        /// (2026-12-01T08:00:00Z) or Unix milliseconds.
        #[arg(long, value_name = "TIME")]
        since: String,
        /// jsonl (the export's JSON lines) or rfc5424 (the syslog messages).
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
}

/// The line formats of `audit export`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExportFormat {
    /// One JSON object a line (`[audit] export = "jsonl:…"`).
    Jsonl,
    /// RFC 5424 syslog messages with structured data (`syslog:…`).
    Rfc5424,
}

/// Events read per poll while following the audit log.
const AUDIT_PAGE: u32 = 1000;

/// Runs an admin command; what it records is dated by `clock` and audited as done by
/// `cli:<system user>`.
pub(crate) async fn run(args: AdminArgs, clock: &Clock) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => BrokerConfig::load(path)?,
        None => BrokerConfig::for_dev(&args.data_dir),
    };
    if let AdminCommand::Keys(command) = &args.command {
        return run_keys(&config, clock, command);
    }
    if let AdminCommand::SshCa(command) = &args.command {
        return run_ssh_ca(&config, clock, command);
    }
    portcullis_broker::files::ensure_private_dir(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    // What this command audits goes to the broker's export too, as it happens.
    let export = portcullis_broker::audit_export::start(&config.audit, &Default::default());
    let options = StoreOptions {
        audit_sink: export.as_ref().map(|export| export.sink()),
        ..StoreOptions::default()
    };
    let store = Store::connect_with(config.database_url().expose(), &options)
        .await
        .context("cannot open the database")?;
    let actor = Actor::cli(&system_user());
    let result = match args.command {
        AdminCommand::User(command) => run_user(&store, clock, &actor, command).await,
        AdminCommand::Group(command) => run_group(&store, clock, &actor, command).await,
        AdminCommand::Service(command) => {
            run_service(&store, &config, clock, &actor, command).await
        }
        AdminCommand::Credentials(CredentialsCommand::RotateKey) => {
            rotate_credential_key(&store, &config, clock, &actor).await
        }
        AdminCommand::Tunnel(command) => run_tunnel(&store, clock, &actor, command).await,
        AdminCommand::Audit(command) => run_audit(&store, clock, command).await,
        AdminCommand::Keys(_) | AdminCommand::SshCa(_) => Ok(()),
    };
    store.close().await;
    if let Some(export) = export {
        export.finish(Duration::from_secs(5)).await;
    }
    result
}

fn run_keys(config: &BrokerConfig, clock: &Clock, command: &KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Init { force } => {
            let info = keys::init(&config.data_dir, *force, clock())?;
            println!("created the signing key in {}", config.data_dir.display());
            println!("{info}");
        }
        KeysCommand::Show => {
            let key = keys::load(&config.data_dir)?;
            println!("{}", keys::PublicKeyInfo::new(key.verifying_key()));
        }
    }
    Ok(())
}

/// Who runs this command, for the audit log: the login name from the environment.
fn system_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| !name.is_empty() && name.len() <= 64)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What a revocation did, for the operator.
fn revoked_text(revoked: Revoked) -> String {
    format!(
        "{} live connection(s) ending, {} unused ticket(s) cancelled",
        revoked.sessions,
        revoked.client_tickets + revoked.tunnel_tickets
    )
}

fn run_ssh_ca(config: &BrokerConfig, clock: &Clock, command: &SshCaCommand) -> anyhow::Result<()> {
    match command {
        SshCaCommand::Init { force } => {
            portcullis_broker::files::ensure_private_dir(&config.data_dir)
                .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
            let (ca, previous) = SshCa::init(&config.data_dir, *force, clock())?;
            eprintln!(
                "created the SSH user CA in {}; put this line in every sshd's \
                 TrustedUserCAKeys file, then restart the broker:",
                ssh_ca::ca_path(&config.data_dir).display()
            );
            if let Some(previous) = previous {
                eprintln!("(the previous CA is kept as {})", previous.display());
            }
            println!("{}", ca.public_line());
        }
        SshCaCommand::Show => {
            let ca = SshCa::load(&config.data_dir)?.with_context(|| {
                format!(
                    "no SSH CA in {}: create one with `portcullis admin ssh-ca init`",
                    config.data_dir.display()
                )
            })?;
            println!("{}", ca.public_line());
        }
    }
    Ok(())
}

/// The credential key as the broker loads it (`credentials.key_env`, else the file).
fn credential_key(config: &BrokerConfig) -> anyhow::Result<(CredentialKey, KeySource)> {
    let env = config.credentials.key_env.as_deref().map(|name| {
        let value = std::env::var(name).ok().map(zeroize::Zeroizing::new);
        (name, value)
    });
    Ok(credentials::load_or_create(&config.data_dir, env)?)
}

async fn rotate_credential_key(
    store: &Store,
    config: &BrokerConfig,
    clock: &Clock,
    actor: &Actor,
) -> anyhow::Result<()> {
    let (key, source) = credential_key(config)?;
    let rotation = credentials::rotate(&config.data_dir, &key, &source, store, clock()).await?;
    actions::credential_key_rotated(store, clock(), actor, rotation.resealed).await?;
    eprintln!(
        "re-sealed {} stored password(s) under a new credential key",
        rotation.resealed
    );
    if let Some(previous) = &rotation.previous {
        eprintln!(
            "the old key is kept as {}; copy the new credential-key to every broker and \
             restart them",
            previous.display()
        );
    }
    if let (Some(hex), KeySource::Environment(name)) = (&rotation.new_key_hex, &source) {
        eprintln!("set {name} to this new key on every broker and restart them:");
        println!("{}", hex.as_str());
    }
    Ok(())
}

async fn run_user(
    store: &Store,
    clock: &Clock,
    actor: &Actor,
    command: UserCommand,
) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, groups } => {
            let hash = password_from_stdin(&name)?;
            actions::add_user(store, clock(), actor, &name, &hash, &groups).await?;
            println!("added user {name}");
        }
        UserCommand::List => {
            for user in store.list_users().await? {
                let groups = store.groups_of_user(user.id).await?;
                let source = match &user.oidc {
                    Some(link) => format!("oidc:{}", link.provider),
                    None => "password".to_owned(),
                };
                let state = if user.disabled_at.is_some() {
                    "\tdisabled"
                } else {
                    ""
                };
                println!("{}\t{}\t{source}{state}", user.username, groups.join(","));
            }
        }
        UserCommand::Remove { name } => {
            let revoked = actions::remove_user(store, clock(), actor, &name).await?;
            println!("removed user {name} ({})", revoked_text(revoked));
        }
        UserCommand::Disable { name } => {
            let revoked = actions::disable_user(store, clock(), actor, &name).await?;
            println!(
                "disabled user {name}: their portal sessions have ended; {}",
                revoked_text(revoked)
            );
        }
        UserCommand::Enable { name } => {
            actions::enable_user(store, clock(), actor, &name).await?;
            println!("enabled user {name}");
        }
        UserCommand::Passwd { name } => {
            let user = store
                .user_by_name(&name)
                .await?
                .with_context(|| format!("no user named {name}"))?;
            if let Some(link) = &user.oidc {
                bail!(
                    "{name} signs in through the OpenID Connect provider {} and has no password",
                    link.provider
                );
            }
            let hash = password_from_stdin(&name)?;
            actions::set_password(store, clock(), actor, &name, &hash).await?;
            println!("changed the password of {name} (their portal sessions have ended)");
        }
    }
    Ok(())
}

async fn run_group(
    store: &Store,
    clock: &Clock,
    actor: &Actor,
    command: GroupCommand,
) -> anyhow::Result<()> {
    match command {
        GroupCommand::Add { name } => {
            actions::add_group(store, clock(), actor, &name).await?;
            println!("added group {name}");
        }
        GroupCommand::List => {
            for group in store.list_groups().await? {
                let members = store.members_of_group(&group.name).await?;
                println!("{}\t{}", group.name, members.join(","));
            }
        }
        GroupCommand::Remove { name } => {
            let revoked = actions::remove_group(store, clock(), actor, &name).await?;
            println!("removed group {name} ({})", revoked_text(revoked));
        }
        GroupCommand::AddMember { group, user } => {
            actions::add_member(store, clock(), actor, &group, &user).await?;
            println!("added {user} to {group}");
        }
        GroupCommand::RemoveMember { group, user } => {
            let revoked = actions::remove_member(store, clock(), actor, &group, &user).await?;
            println!("removed {user} from {group} ({})", revoked_text(revoked));
        }
    }
    Ok(())
}

async fn run_service(
    store: &Store,
    config: &BrokerConfig,
    clock: &Clock,
    actor: &Actor,
    command: ServiceCommand,
) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Add {
            name,
            host,
            port,
            protocol,
            transport,
            tunnel_group,
            groups,
            max_session_secs,
            readiness,
        } => {
            if transport == Transport::Tunneled && tunnel_group.is_none() {
                bail!("a tunneled service needs --tunnel-group (the group of its tunnel servers)");
            }
            let service = NewService {
                name: name.clone(),
                host,
                port,
                protocol,
                transport,
                tunnel_group,
                max_session_secs,
                readiness,
                allowed_groups: groups,
            };
            let id = actions::add_service(store, clock(), actor, service).await?;
            println!("added service {name} (id {id})");
        }
        ServiceCommand::List => {
            for service in store.list_services().await? {
                let mode = store
                    .service_credentials(service.id)
                    .await?
                    .unwrap_or_default()
                    .mode;
                println!(
                    "{}\t{}\t{}:{}\t{}\t{}\tgroups={}\treadiness={}\tcredentials={mode}",
                    service.id,
                    service.name,
                    service.host,
                    service.port,
                    service.protocol,
                    service.transport,
                    service.allowed_groups.join(","),
                    service.readiness
                );
            }
        }
        ServiceCommand::SetCredentials {
            name,
            mode,
            username,
            domain,
            ssh_principal,
            ssh_source_address,
        } => {
            let service = store
                .service_by_name(&name)
                .await?
                .with_context(|| format!("no service named {name}"))?;
            if !matches!(mode, ModeArg::Stored) && username.is_some() {
                bail!("--username goes with --mode stored only");
            }
            let credentials = match mode {
                ModeArg::PassThrough => ServiceCredentials {
                    domain,
                    ..ServiceCredentials::mode(CredentialMode::PassThrough)
                },
                ModeArg::Stored => {
                    let username = username.context("the stored mode needs --username")?;
                    let password = secret_from_stdin(&format!("the password of {username}"))?;
                    let (key, _) = credential_key(config)?;
                    ServiceCredentials {
                        username: Some(username),
                        domain,
                        secret: Some(credentials::seal_stored(&key, service.id, &password)?),
                        ..ServiceCredentials::mode(CredentialMode::Stored)
                    }
                }
                ModeArg::SshCertificate => {
                    let template = ssh_principal.unwrap_or_else(|| "{username}".to_owned());
                    if ssh_ca::render_principal(&template, "user").is_none() {
                        bail!("--ssh-principal must give a name without spaces or commas");
                    }
                    ServiceCredentials {
                        ssh_principal: Some(template),
                        ssh_source_address,
                        ..ServiceCredentials::mode(CredentialMode::SshCertificate)
                    }
                }
            };
            actions::set_service_credentials(store, clock(), actor, &name, &credentials).await?;
            println!(
                "service {name} now signs users in with {}",
                credentials.mode
            );
            if matches!(mode, ModeArg::SshCertificate) && SshCa::load(&config.data_dir)?.is_none() {
                eprintln!("note: the broker has no SSH CA yet: run `portcullis admin ssh-ca init`");
            }
        }
        ServiceCommand::ClearCredentials { name } => {
            actions::set_service_credentials(
                store,
                clock(),
                actor,
                &name,
                &ServiceCredentials::default(),
            )
            .await?;
            println!("service {name} no longer signs users in");
        }
        ServiceCommand::Remove { name } => {
            let revoked = actions::remove_service(store, clock(), actor, &name).await?;
            println!("removed service {name} ({})", revoked_text(revoked));
        }
    }
    Ok(())
}

async fn run_tunnel(
    store: &Store,
    clock: &Clock,
    actor: &Actor,
    command: TunnelCommand,
) -> anyhow::Result<()> {
    match command {
        TunnelCommand::Add {
            name,
            address,
            group,
            legacy,
        } => {
            let token =
                actions::add_tunnel_server(store, clock(), actor, &name, &address, &group, legacy)
                    .await?;
            eprintln!("added tunnel server {name}; its token (shown only now):");
            println!("{token}");
        }
        TunnelCommand::List => {
            for server in store.list_tunnel_servers().await? {
                let seen = server
                    .last_seen_at
                    .map_or_else(|| "never".to_owned(), portcullis_broker::clock::rfc3339);
                println!(
                    "{}\t{}\tgroup={}{}\tlast_seen={seen}",
                    server.name,
                    server.public_address,
                    server.group,
                    if server.legacy { "\tlegacy" } else { "" }
                );
            }
        }
        TunnelCommand::RotateToken { name } => {
            let token = actions::rotate_tunnel_token(store, clock(), actor, &name).await?;
            eprintln!(
                "new token of tunnel server {name} (shown only now; the old one no longer works):"
            );
            println!("{token}");
        }
        TunnelCommand::Remove { name } => {
            actions::remove_tunnel_server(store, clock(), actor, &name).await?;
            println!("removed tunnel server {name}");
        }
    }
    Ok(())
}

async fn run_audit(store: &Store, clock: &Clock, command: AuditCommand) -> anyhow::Result<()> {
    let (lines, follow) = match command {
        AuditCommand::Tail { lines, follow } => (lines, follow),
        AuditCommand::Export { since, format } => return export_audit(store, &since, format).await,
        AuditCommand::Prune { older_than_days } => {
            let day_ms = 24 * 3_600_000;
            let before = clock().saturating_sub(i64::from(older_than_days).saturating_mul(day_ms));
            let deleted = store.prune_audit(before).await?;
            println!(
                "deleted {deleted} audit events older than {older_than_days} days \
                 (before Unix millisecond {before})"
            );
            return Ok(());
        }
    };
    let mut last = 0;
    for event in store.audit_tail(lines).await? {
        println!("{}", serde_json::to_string(&event)?);
        last = event.id;
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for event in store.audit_after(last, AUDIT_PAGE).await? {
            println!("{}", serde_json::to_string(&event)?);
            last = event.id;
        }
    }
}

/// `audit export`: every event at or after `since`, a page at a time.
async fn export_audit(store: &Store, since: &str, format: ExportFormat) -> anyhow::Result<()> {
    use portcullis_broker::audit_export::{host_name, jsonl_line, rfc5424_line};
    use std::io::Write;
    let since = portcullis_broker::clock::parse_time(since).with_context(|| {
        format!(
            "--since {since:?} is not a date (2026-12-01), an RFC 3339 time or Unix milliseconds"
        )
    })?;
    let host = host_name();
    let pid = std::process::id();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut last = 0;
    loop {
        let events = store.audit_since(since, last, AUDIT_PAGE).await?;
        for event in &events {
            let line = match format {
                ExportFormat::Jsonl => jsonl_line(event, &host),
                ExportFormat::Rfc5424 => rfc5424_line(event, &host, pid),
            };
            writeln!(out, "{line}")?;
            last = event.id;
        }
        if events.len() < AUDIT_PAGE as usize {
            break;
        }
    }
    out.flush()?;
    Ok(())
}

fn password_from_stdin(user: &str) -> anyhow::Result<String> {
    let password = secret_from_stdin(&format!("password for {user}"))?;
    Ok(hash_password(&password)?)
}

/// A secret read from stdin (one line), prompting at a terminal; never an argument.
fn secret_from_stdin(what: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{what}: ");
    }
    let password =
        read_password(&mut stdin.lock()).context("cannot read the password from stdin")?;
    if password.is_empty() {
        bail!("empty password: give {what} on stdin, e.g. `echo 'secret' | portcullis admin …`");
    }
    Ok(password)
}
