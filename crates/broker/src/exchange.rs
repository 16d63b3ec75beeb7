//! The client ticket exchange (docs/protocol.md §1.2, steps 3–4): check the ticket, the
//! launcher and the service; build, sign and encrypt the payload; for tunneled services
//! store a tunnel ticket; and consume the client ticket — only when all of that succeeded
//! (difference 1).

use portcullis_proto::TicketId;
use portcullis_proto::api::{CheckedTicketRequest, Percent, ProtocolVersion, TicketRequest};
use portcullis_proto::credential::CredentialKey;
use portcullis_proto::openuds::Envelope;
use portcullis_proto::payload::{self, BuildOptions, LogSettings};
use serde_json::json;

use crate::client_addr::ClientAddr;
use crate::clock::Millis;
use crate::credentials::{open_stored, ssh_ca};
use crate::metrics::RefusalReason;
use crate::model::{CredentialMode, Protocol, Readiness, Transport};
use crate::scripts::{
    LaunchParams, Os, RdpParams, Route, SecretString, ServiceParams, SshParams, TcpParams,
    TunnelParams, TunnelProtocol, VncParams,
};
use crate::state::AppState;
use crate::store::{
    AuditEvent, ClientTicket, ExchangeService, NewTunnelTicket, ServiceCredentials, StoreError,
    TunnelServer,
};
use crate::tickets::crypto::{seal_secret, ticket_hash};

/// Why an exchange did not produce a payload. The `Display` text is what the launcher shows.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeRefusal {
    /// The body is not a valid ticket request.
    #[error("Invalid request: {0}")]
    Invalid(String),
    /// Unknown, used, expired or malformed ticket, or a wrong scrambler: one answer for all.
    #[error("Ticket not found or expired: start the connection again from the portal")]
    UnknownTicket,
    /// The launcher's protocol version is below the required one.
    #[error("Launcher version {have} is too old; {need} is required")]
    VersionTooOld {
        /// The launcher's version.
        have: ProtocolVersion,
        /// The required version.
        need: ProtocolVersion,
    },
    /// The service is gone or the user lost the right to it.
    #[error("This service is no longer available to you")]
    Forbidden,
    /// The launcher lacks a capability the service needs.
    #[error("{0}")]
    UnsupportedClient(String),
    /// No tunnel server serves the service's tunnel group.
    #[error("No tunnel server is available for this service; ask your administrator")]
    NoTunnelServer,
    /// The target does not answer yet; the launcher retries with the same ticket.
    #[error("Preparing service")]
    Preparing(Percent),
    /// Anything else (logged; not shown in detail).
    #[error("The broker could not complete the request; try again")]
    Internal(String),
}

impl ExchangeRefusal {
    /// The metrics label.
    pub fn reason(&self) -> RefusalReason {
        match self {
            Self::Invalid(_) => RefusalReason::InvalidRequest,
            Self::UnknownTicket => RefusalReason::UnknownTicket,
            Self::VersionTooOld { .. } => RefusalReason::VersionTooOld,
            Self::Forbidden => RefusalReason::Forbidden,
            Self::UnsupportedClient(_) | Self::NoTunnelServer => RefusalReason::UnsupportedClient,
            Self::Preparing(_) => RefusalReason::Preparing,
            Self::Internal(_) => RefusalReason::Internal,
        }
    }
}

impl From<StoreError> for ExchangeRefusal {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.to_string())
    }
}

/// Runs one exchange. `ticket_text` comes from the URL, `body` is the raw request body.
pub async fn exchange(
    state: &AppState,
    ticket_text: &str,
    body: &[u8],
    client: ClientAddr,
) -> Result<Envelope, ExchangeRefusal> {
    let request = TicketRequest::from_json(body)
        .and_then(|request| request.check())
        .map_err(|error| ExchangeRefusal::Invalid(error.to_string()))?;
    check_version(state, &request)?;
    let ticket = TicketId::parse(ticket_text).map_err(|_| ExchangeRefusal::UnknownTicket)?;
    let hash = ticket_hash(&ticket);
    let now = state.now();
    let context = state
        .store
        .exchange_context(&hash, now)
        .await?
        .ok_or(ExchangeRefusal::UnknownTicket)?;
    let client_ticket = context.ticket;
    if !client_ticket.scrambler_matches(request.scrambler.as_str()) {
        return Err(ExchangeRefusal::UnknownTicket);
    }
    let service = context.service.ok_or(ExchangeRefusal::Forbidden)?;
    if !context.may_use {
        return Err(ExchangeRefusal::Forbidden);
    }
    let tunnel_server = match service.transport {
        Transport::Direct => None,
        Transport::Tunneled => Some(pick_tunnel_server(state, &service, &request).await?),
    };

    let timeout = state.config.readiness_timeout();
    if service.readiness == Readiness::Tcp
        && !state
            .readiness
            .target_answers(&service.host, service.port, timeout, now)
            .await
    {
        let percent = preparing_percent(&client_ticket, now);
        state
            .store
            .set_client_ticket_progress(&hash, percent.get(), "Preparing service")
            .await?;
        return Err(ExchangeRefusal::Preparing(percent));
    }

    let tunnel_ticket = match &tunnel_server {
        Some(_) => Some(TicketId::generate().map_err(internal)?),
        None => None,
    };
    let os = Os::from_client(
        request.client.as_ref().map(|client| client.os.as_str()),
        client_ticket.client_os.as_deref(),
    );
    let route = match (&tunnel_server, &tunnel_ticket) {
        (Some(server), Some(ticket)) => Route::Tunneled {
            tunnel: tunnel_params(state, server, ticket)?,
        },
        _ => Route::Direct {
            host: service.host.clone(),
            port: service.port,
        },
    };
    let handed = hand_credentials(
        state,
        &Handover {
            service: &service,
            credentials: &context.credentials,
            username: context.username.as_deref(),
            ticket_box: client_ticket.credential_box.as_deref(),
            ticket: &ticket,
            request: &request,
            client: &client,
            now,
        },
    )?;
    let params = LaunchParams {
        name: service.name.clone(),
        route,
        service: handed.params,
    };
    let params_json = params.to_json().map_err(internal)?;
    let script = state.scripts.get(service.protocol, os);
    let payload = payload::build(
        script,
        &params_json,
        &LogSettings::default(),
        &state.signing_key,
        &BuildOptions {
            ticket: &ticket,
            client_key: &request.client_key,
            payload_signature: request.wants_payload_signature(),
        },
    )
    .map_err(internal)?;
    let (envelope, secret) =
        Envelope::seal(&request.client_key, &ticket, &payload).map_err(internal)?;

    let new_tunnel_ticket = match &tunnel_ticket {
        Some(id) => Some(NewTunnelTicket {
            id_hash: ticket_hash(id),
            secret_enc: seal_secret(id, &secret).map_err(internal)?,
            target_host: service.host.clone(),
            target_port: service.port,
            service_id: service.id,
            user_id: client_ticket.user_id,
            tunnel_group: service.tunnel_group.clone().unwrap_or_default(),
            max_session_secs: service.max_session_secs,
            created_at: now,
            expires_at: now
                .saturating_add(secs_to_millis(state.config.tickets.tunnel_ticket_ttl_secs)),
            issued_to_legacy: tunnel_server.as_ref().is_some_and(|server| server.legacy),
        }),
        None => None,
    };
    let audit = AuditEvent {
        actor: None,
        at: now,
        kind: "ticket.exchanged".into(),
        username: context.username,
        service: Some(service.name.clone()),
        source_ip: Some(client.describe()),
        detail: json!({
            "launcher": request.client.as_ref().map_or("openuds5", |c| c.name.as_str()),
            "transport": service.transport.as_str(),
            "tunnel_server": tunnel_server.as_ref().map(|server| server.name.as_str()),
            "hostname": request.hostname,
            "credentials": context.credentials.mode.as_str(),
            "credential_sent": handed.sent,
        })
        .to_string(),
    };
    if !state
        .store
        .exchange_client_ticket(&hash, now, new_tunnel_ticket, audit)
        .await?
    {
        return Err(ExchangeRefusal::UnknownTicket);
    }
    Ok(envelope)
}

fn check_version(state: &AppState, request: &CheckedTicketRequest) -> Result<(), ExchangeRefusal> {
    let need = state.config.client.required_version;
    if request.version < need {
        return Err(ExchangeRefusal::VersionTooOld {
            have: request.version,
            need,
        });
    }
    Ok(())
}

/// Chooses the tunnel server for a tunneled service: one that speaks tunnel protocol v1
/// for the Portcullis launcher, a legacy one for an OpenUDS 5 launcher.
async fn pick_tunnel_server(
    state: &AppState,
    service: &ExchangeService,
    request: &CheckedTicketRequest,
) -> Result<TunnelServer, ExchangeRefusal> {
    // Only OpenUDS 5 launchers (no `client`) are sent to legacy tunnel servers
    // (docs/protocol.md §6.6, §7.7); a launcher with `client` must speak tunnel-v1.
    let wants_legacy = request.is_openuds5();
    if !wants_legacy && !request.supports_tunnel_v1() {
        return Err(ExchangeRefusal::UnsupportedClient(
            "This launcher does not speak the Portcullis tunnel protocol (tunnel-v1) this \
             service needs."
                .into(),
        ));
    }
    let group = service.tunnel_group.as_deref().unwrap_or_default();
    let servers = state.store.tunnel_servers_in_group(group).await?;
    if servers.is_empty() {
        return Err(ExchangeRefusal::NoTunnelServer);
    }
    let mut candidates: Vec<TunnelServer> = servers
        .into_iter()
        .filter(|server| server.legacy == wants_legacy)
        .collect();
    if candidates.is_empty() {
        return Err(if wants_legacy {
            ExchangeRefusal::UnsupportedClient(
                "This service is reached through a Portcullis tunnel (protocol v1), which \
                 this launcher does not speak."
                    .into(),
            )
        } else {
            // Only legacy servers, which this launcher is never sent to: nothing it can
            // do about it (downloading the launcher it already runs would not help).
            ExchangeRefusal::NoTunnelServer
        });
    }
    let index = portcullis_proto::random::array::<4>()
        .map(|bytes| u32::from_le_bytes(bytes) as usize % candidates.len())
        .map_err(internal)?;
    Ok(candidates.swap_remove(index))
}

/// How far the ticket is into its lifetime, as the "Preparing service" percentage
/// (never 100: the ticket is still valid).
fn preparing_percent(ticket: &ClientTicket, now: Millis) -> Percent {
    let lifetime = (ticket.expires_at - ticket.created_at).max(1);
    let elapsed = (now - ticket.created_at).clamp(0, lifetime);
    let percent = u8::try_from(elapsed * 99 / lifetime).unwrap_or(99);
    Percent::saturating(percent)
}

/// What the launcher needs to reach `server` for this connection.
fn tunnel_params(
    state: &AppState,
    server: &TunnelServer,
    ticket: &TicketId,
) -> Result<TunnelParams, ExchangeRefusal> {
    let (host, port) = server
        .public_address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse().ok()?)))
        .ok_or_else(|| {
            ExchangeRefusal::Internal(format!(
                "tunnel server {} has no valid host:port address",
                server.name
            ))
        })?;
    Ok(TunnelParams {
        host: host.to_owned(),
        port,
        ticket: ticket.clone(),
        startup_time: u32::try_from(state.config.tickets.tunnel_startup().as_millis())
            .unwrap_or(u32::MAX),
        verify_ssl: true,
        tls: false,
        protocol: if server.legacy {
            TunnelProtocol::Openuds5
        } else {
            TunnelProtocol::V1
        },
    })
}

/// What [`hand_credentials`] needs of one exchange.
struct Handover<'a> {
    service: &'a ExchangeService,
    credentials: &'a ServiceCredentials,
    username: Option<&'a str>,
    ticket_box: Option<&'a [u8]>,
    ticket: &'a TicketId,
    request: &'a CheckedTicketRequest,
    client: &'a ClientAddr,
    now: Millis,
}

/// The per-protocol launcher options with the service's credentials, and whether a
/// credential (password or certificate) went into them.
struct Handed {
    params: ServiceParams,
    sent: bool,
}

/// The per-protocol launcher options, with the account the service's credential mode
/// names (docs/protocol.md §6.8). Services carry no other client options yet, so the
/// launcher's defaults apply.
fn hand_credentials(state: &AppState, h: &Handover<'_>) -> Result<Handed, ExchangeRefusal> {
    let (username, domain, password) = match h.credentials.mode {
        CredentialMode::None | CredentialMode::SshCertificate => (None, None, None),
        CredentialMode::PassThrough => (
            h.username.map(str::to_owned),
            h.credentials.domain.clone(),
            open_ticket_box(h),
        ),
        CredentialMode::Stored => {
            let sealed = h.credentials.secret.as_deref().unwrap_or_default();
            let password = open_stored(&state.credentials.key, h.service.id, sealed)
                .and_then(|secret| Ok(secret.to_text()?))
                .map_err(|error| {
                    ExchangeRefusal::Internal(format!(
                        "the stored credentials of service {}: {error}",
                        h.service.name
                    ))
                })?;
            (
                h.credentials.username.clone(),
                h.credentials.domain.clone(),
                Some(SecretString::new(password.to_string())),
            )
        }
    };
    let sent = password.is_some();
    let params = match h.service.protocol {
        Protocol::Rdp => ServiceParams::Rdp(RdpParams {
            username,
            domain,
            password,
            ..RdpParams::default()
        }),
        Protocol::Vnc => ServiceParams::Vnc(VncParams { password }),
        Protocol::Tcp => ServiceParams::Tcp(TcpParams::default()),
        Protocol::Ssh if h.credentials.mode == CredentialMode::SshCertificate => {
            let (principal, certificate) = ssh_certificate(state, h)?;
            let sent = certificate.is_some();
            return Ok(Handed {
                params: ServiceParams::Ssh(SshParams {
                    username: principal,
                    ssh_certificate: certificate,
                    ..SshParams::default()
                }),
                sent,
            });
        }
        Protocol::Ssh => ServiceParams::Ssh(SshParams::default()),
    };
    Ok(Handed { params, sent })
}

/// The pass-through password sealed to this client ticket, opened with the ticket id and
/// the scrambler of the request; `None` when the ticket carries none.
fn open_ticket_box(h: &Handover<'_>) -> Option<SecretString> {
    let sealed = h.ticket_box?;
    let opened = CredentialKey::for_ticket(h.ticket, &h.request.scrambler)
        .and_then(|key| key.open(ticket_hash(h.ticket).as_bytes(), sealed))
        .and_then(|secret| secret.to_text());
    match opened {
        Ok(password) => Some(SecretString::new(password.to_string())),
        Err(error) => {
            tracing::warn!(%error, ticket = %h.ticket, "a ticket's pass-through box does not open");
            None
        }
    }
}

/// The principal and, for a launcher that sent a key while the broker has a CA, its
/// certificate (docs/protocol.md §6.8.4).
fn ssh_certificate(
    state: &AppState,
    h: &Handover<'_>,
) -> Result<(Option<String>, Option<String>), ExchangeRefusal> {
    let template = h
        .credentials
        .ssh_principal
        .as_deref()
        .unwrap_or("{username}");
    let Some(principal) = h
        .username
        .and_then(|username| ssh_ca::render_principal(template, username))
    else {
        return Err(ExchangeRefusal::Internal(format!(
            "service {}: the principal template {template:?} gives no valid principal for this user",
            h.service.name
        )));
    };
    let (Some(key), Some(ca)) = (h.request.ssh_public_key(), &state.credentials.ssh_ca) else {
        if state.credentials.ssh_ca.is_none() {
            tracing::warn!(
                service = %h.service.name,
                "an ssh-certificate service, but the broker has no SSH CA \
                 (portcullis admin ssh-ca init): no certificate"
            );
        }
        return Ok((Some(principal), None));
    };
    let default_source = match h.service.transport {
        Transport::Direct => "client",
        Transport::Tunneled => "none",
    };
    let setting = h.credentials.ssh_source_address.as_deref();
    let sources = ssh_ca::source_addresses(Some(setting.unwrap_or(default_source)), h.client.0);
    let certificate = ca
        .sign(&ssh_ca::CertificateRequest {
            key: &key,
            principal: &principal,
            key_id: format!(
                "portcullis user={} service={}",
                h.username.unwrap_or_default(),
                h.service.id
            ),
            now_secs: u64::try_from(h.now / 1000).unwrap_or_default(),
            validity_secs: state.config.credentials.ssh_certificate_secs,
            source_addresses: &sources,
        })
        .map_err(|error| ExchangeRefusal::Internal(format!("SSH certificate: {error}")))?;
    Ok((Some(principal), Some(certificate)))
}

fn secs_to_millis(secs: u64) -> Millis {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn internal(error: impl std::fmt::Display) -> ExchangeRefusal {
    ExchangeRefusal::Internal(error.to_string())
}
