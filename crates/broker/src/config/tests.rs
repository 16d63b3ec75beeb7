#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use super::*;

const EXAMPLE: &str = include_str!("../../../../docs/broker.example.toml");

fn parse(text: &str) -> Result<BrokerConfig, ConfigError> {
    BrokerConfig::from_toml(text, Path::new("broker.toml"))
}

fn parse_error(text: &str) -> String {
    let error = parse(text).unwrap_err();
    assert!(matches!(error, ConfigError::Parse { .. }), "{error:?}");
    error.to_string()
}

fn validation_error(config: &BrokerConfig) -> (&'static str, String) {
    match config.validate().unwrap_err() {
        error @ ConfigError::Invalid { field, .. } => (field, error.to_string()),
        other => panic!("not a validation error: {other:?}"),
    }
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config, BrokerConfig::default());
    config.validate().unwrap();

    assert_eq!(config.data_dir, Path::new("./portcullis-data"));
    assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
    assert_eq!(config.tls.mode, TlsMode::SelfSigned);
    assert_eq!(config.scripts_dir, None);
    assert_eq!(config.tickets.client_ticket_ttl(), Duration::from_secs(60));
    assert_eq!(config.tickets.tunnel_ticket_ttl(), Duration::from_secs(120));
    assert_eq!(config.tickets.wrong_proofs_per_minute_per_source, 10);
    assert_eq!(
        config.tickets.wrong_proofs_per_minute_per_tunnel_server,
        100
    );
    assert_eq!(config.client.available_version, PROTOCOL_VERSION);
    assert_eq!(config.client.required_version, PROTOCOL_VERSION);
    assert_eq!(config.limits.body_limit_bytes, 65_536);
    assert_eq!(config.limits.request_timeout(), Duration::from_secs(30));
    assert_eq!(config.limits.login_attempts_per_minute_per_user, 5);
    assert_eq!(config.limits.login_attempts_per_minute_per_ip, 20);
    assert_eq!(config.limits.header_read_timeout(), Duration::from_secs(10));
    assert_eq!(
        config.limits.tls_handshake_timeout(),
        Duration::from_secs(10)
    );
    assert_eq!(config.limits.idle_timeout(), Duration::from_secs(30));
    assert_eq!(config.limits.max_connections, 1024);
    assert!(!config.tls.allow_tls12);
    assert!(!config.tls.require_post_quantum);
    assert_eq!(config.readiness_timeout(), Duration::from_millis(1000));
    assert!(config.tls_enabled());
    assert_eq!(
        config.certificate_names(),
        ["127.0.0.1", "localhost", "::1"]
    );
    assert_eq!(config.session.cookie_ttl(), Duration::from_secs(8 * 3600));
    assert_eq!(config.log.level, "info");

    assert_eq!(config.public_url().as_str(), "https://127.0.0.1:8443");
    assert_eq!(config.public_url().launch_host(), "127.0.0.1:8443");
    assert_eq!(
        config.database_url().expose(),
        "sqlite://./portcullis-data/portcullis.db?mode=rwc"
    );
    assert!(config.database_url().is_sqlite());
    assert_eq!(
        config.client_version_info(),
        ClientVersionInfo {
            available_version: "5.0.0".into(),
            required_version: "5.0.0".into(),
            client_link: "https://127.0.0.1:8443/download".into(),
        }
    );
}

#[test]
fn the_example_file_sets_every_setting() {
    let config = parse(EXAMPLE).unwrap();
    let defaults = BrokerConfig::default();
    assert_eq!(config.data_dir, Path::new("/var/lib/portcullis"));
    assert_eq!(config.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(
        config.public_url().as_str(),
        "https://broker.example.com:8443"
    );
    assert_eq!(
        config.database_url().expose(),
        "postgres://portcullis:change-me@db.example.com/portcullis"
    );
    assert_eq!(
        config.scripts_dir.as_deref(),
        Some(Path::new("/etc/portcullis/scripts"))
    );
    assert_eq!(
        config.tls,
        TlsConfig {
            mode: TlsMode::Files,
            cert: Some("/etc/portcullis/tls/fullchain.pem".into()),
            key: Some("/etc/portcullis/tls/privkey.pem".into()),
            allow_tls12: false,
            require_post_quantum: false,
        }
    );
    assert_eq!(
        config.client_link(),
        "https://broker.example.com:8443/download"
    );
    // The remaining sections spell out the defaults.
    assert_eq!(config.readiness_timeout_ms, defaults.readiness_timeout_ms);
    assert_eq!(config.trusted_proxies, defaults.trusted_proxies);
    assert_eq!(config.tickets, defaults.tickets);
    assert_eq!(config.limits, defaults.limits);
    assert_eq!(config.session, defaults.session);
    assert_eq!(config.log, defaults.log);
    assert_eq!(config.audit, defaults.audit);
    assert_eq!(config.admin.groups, ["portcullis-admins"]);
    assert_eq!(config.client.required_version, PROTOCOL_VERSION);

    // Its paths do not exist here; with real files in their place it validates.
    assert_eq!(validation_error(&config).0, "tls.cert");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    fs::write(&cert, "cert").unwrap();
    fs::write(&key, "key").unwrap();
    let text = EXAMPLE
        .replace("/etc/portcullis/tls/fullchain.pem", cert.to_str().unwrap())
        .replace("/etc/portcullis/tls/privkey.pem", key.to_str().unwrap())
        .replace("/etc/portcullis/scripts", dir.path().to_str().unwrap());
    parse(&text).unwrap().validate().unwrap();
}

#[test]
fn load_reads_validates_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    fs::write(
        &path,
        "listen = \"127.0.0.1:9443\"\n[log]\nlevel = \"debug\"\n",
    )
    .unwrap();
    let config = BrokerConfig::load(&path).unwrap();
    assert_eq!(config.listen.port(), 9443);
    assert_eq!(config.log.level, "debug");

    fs::write(&path, "[client]\nrequired_version = \"6.0.0\"\n").unwrap();
    let message = BrokerConfig::load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "{}: invalid `client.required_version`",
            path.display()
        )),
        "{message}"
    );

    let missing = dir.path().join("missing.toml");
    let error = BrokerConfig::load(&missing).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains(&missing.display().to_string()));
}

#[test]
fn unknown_settings_are_refused_with_file_line_and_name() {
    let message = parse_error("data_dir = \"x\"\ndatadir = \"typo\"\n");
    assert_eq!(
        message.lines().next().unwrap(),
        message,
        "one line: {message}"
    );
    assert!(
        message.starts_with(
            "broker.toml, line 2, column 1, `datadir`: unknown field `datadir`, expected one of"
        ),
        "{message}"
    );

    let message = parse_error("[limits]\nbody_limit_bytes = 1\nsecret_setting = \"hunter2\"\n");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("`limits.secret_setting`"), "{message}");
    assert!(
        message.contains("unknown field `secret_setting`"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2"),
        "the line's value leaked: {message}"
    );

    let message = parse_error("[portal]\ntitle = \"x\"\n");
    assert!(message.contains("unknown field `portal`"), "{message}");
}

#[test]
fn wrong_values_name_the_setting() {
    for (text, field, expected) in [
        ("listen = \"nope\"", "listen", "invalid socket address"),
        (
            "[limits]\nbody_limit_bytes = -1",
            "limits.body_limit_bytes",
            "-1",
        ),
        (
            "[tls]\nmode = \"acme\"",
            "tls.mode",
            "unknown variant `acme`",
        ),
        (
            "[client]\navailable_version = \"5.0\"",
            "client.available_version",
            "major.minor.patch",
        ),
        (
            "[tickets]\nwrong_proofs_per_minute_per_source = \"3\"",
            "tickets.wrong_proofs_per_minute_per_source",
            "expected u32",
        ),
        (
            "public_url = \"http://broker.example.com\"",
            "public_url",
            "https://",
        ),
        (
            "trusted_proxies = [\"10.0.0.1/8\"]",
            "trusted_proxies[0]",
            "write 10.0.0.0/8",
        ),
    ] {
        let message = parse_error(text);
        assert!(message.contains(&format!("`{field}`")), "{text}: {message}");
        assert!(message.contains(expected), "{text}: {message}");
    }
}

#[test]
fn trusted_proxies_are_addresses_and_networks() {
    let config = parse("trusted_proxies = [\"10.0.0.5\", \"fd00::/8\"]").unwrap();
    let shown: Vec<String> = config
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.0.0.5/32", "fd00::/8"]);
}

#[test]
fn syntax_errors_give_the_line() {
    let message = parse_error("data_dir = \"x\"\nlisten = \n");
    assert!(
        message.starts_with("broker.toml, line 2, column"),
        "{message}"
    );
}

#[test]
fn public_urls_are_normalized_and_checked() {
    for (text, url, host) in [
        (
            "https://broker.example.com:8443",
            "https://broker.example.com:8443",
            "broker.example.com:8443",
        ),
        (
            "https://Broker.Example.COM/",
            "https://broker.example.com",
            "broker.example.com",
        ),
        (
            "https://broker.example.com:443",
            "https://broker.example.com",
            "broker.example.com",
        ),
        ("https://[::1]:8443", "https://[::1]:8443", "[::1]:8443"),
        ("https://192.0.2.7", "https://192.0.2.7", "192.0.2.7"),
    ] {
        let parsed = PublicUrl::parse(text).unwrap();
        assert_eq!(
            (parsed.as_str(), parsed.launch_host()),
            (url, host),
            "{text}"
        );
        assert_eq!(parsed.to_string(), url);
    }
    for text in [
        "broker.example.com",
        "http://broker.example.com",
        "https://user:pw@broker.example.com",
        "https://broker.example.com/uds",
        "https://broker.example.com/?x=1",
        "https://broker.example.com/#top",
        "https://bro ker.example.com",
        "https://broker$example.com",
    ] {
        assert!(PublicUrl::parse(text).is_err(), "{text}");
    }
}

#[test]
fn the_derived_public_url_follows_listen() {
    for (listen, url) in [
        ("0.0.0.0:8443", "https://localhost:8443"),
        ("[::]:443", "https://localhost"),
        ("192.0.2.7:443", "https://192.0.2.7"),
        ("[::1]:9000", "https://[::1]:9000"),
    ] {
        let config = BrokerConfig {
            listen: listen.parse().unwrap(),
            ..BrokerConfig::default()
        };
        assert_eq!(config.public_url().as_str(), url, "{listen}");
        assert_eq!(PublicUrl::parse(url).unwrap(), config.public_url());
    }
}

#[test]
fn database_urls_are_checked_and_masked() {
    let config = parse("database_url = \"postgresql://app:s3cret@db/portcullis\"").unwrap();
    let url = config.database_url();
    assert!(!url.is_sqlite());
    assert_eq!(url.expose(), "postgresql://app:s3cret@db/portcullis");
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("postgresql://app:***@db/portcullis"),
        "{shown}"
    );

    let message = parse_error("database_url = \"mysql://app:s3cret@db/x\"");
    assert!(message.contains("`database_url`"), "{message}");
    assert!(message.contains("unsupported database URL"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");

    let dev = BrokerConfig::for_dev(Path::new("/tmp/dev"));
    assert_eq!(
        dev.database_url().expose(),
        "sqlite:///tmp/dev/portcullis.db?mode=rwc"
    );
    assert_eq!(
        format!("{:?}", dev.database_url()),
        "DatabaseUrl(\"sqlite:///tmp/dev/portcullis.db?mode=rwc\")"
    );
    assert_eq!(
        DatabaseUrl::sqlite(Path::new("/tmp/a b?c#d%e/broker.db")).expose(),
        "sqlite:///tmp/a%20b%3Fc%23d%25e/broker.db?mode=rwc"
    );
}

#[test]
fn for_dev_is_the_defaults_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::for_dev(dir.path());
    config.validate().unwrap();
    assert_eq!(config.data_dir, dir.path());
    assert_eq!(
        BrokerConfig {
            data_dir: BrokerConfig::default().data_dir,
            ..config
        },
        BrokerConfig::default()
    );
}

#[test]
fn validation_refuses_inconsistent_settings() {
    let base = BrokerConfig::default();
    let check = |config: BrokerConfig, field: &str, expected: &str| {
        let (got, message) = validation_error(&config);
        assert_eq!(got, field, "{message}");
        assert!(message.contains(expected), "{message}");
    };

    let mut config = base.clone();
    config.client.required_version = ProtocolVersion::new(5, 10, 0);
    config.client.available_version = ProtocolVersion::new(5, 9, 0);
    check(
        config,
        "client.required_version",
        "5.10.0 is above client.available_version 5.9.0",
    );

    let mut config = base.clone();
    config.client.client_link = Some("ftp://example.com/launcher".into());
    check(config, "client.client_link", "http");

    let mut config = base.clone();
    config.tls.mode = TlsMode::Files;
    check(
        config.clone(),
        "tls.cert",
        "is required with mode = \"files\"",
    );
    config.tls.cert = Some("/nonexistent/cert.pem".into());
    config.tls.key = Some("/nonexistent/key.pem".into());
    check(
        config,
        "tls.cert",
        "/nonexistent/cert.pem is not a readable file",
    );

    let mut config = base.clone();
    config.tls.key = Some("key.pem".into());
    check(config, "tls.key", "only used with mode = \"files\"");

    let mut config = base.clone();
    config.tls.mode = TlsMode::Off;
    check(config.clone(), "public_url", "reverse proxy");
    config.public_url = Some(PublicUrl::parse("https://portal.example.com").unwrap());
    config.validate().unwrap();

    let mut config = base.clone();
    config.scripts_dir = Some("/nonexistent/scripts".into());
    check(config, "scripts_dir", "is not a directory");

    let mut config = base.clone();
    config.limits.body_limit_bytes = 0;
    check(config, "limits.body_limit_bytes", "greater than 0");
    let mut config = base.clone();
    config.tickets.wrong_proofs_per_minute_per_source = 0;
    check(
        config,
        "tickets.wrong_proofs_per_minute_per_source",
        "greater than 0",
    );
    let mut config = base.clone();
    config.tickets.wrong_proofs_per_minute_per_ticket = 0;
    check(
        config,
        "tickets.wrong_proofs_per_minute_per_ticket",
        "greater than 0",
    );
    let mut config = base.clone();
    config.tickets.wrong_proofs_per_minute_per_user = 0;
    check(
        config,
        "tickets.wrong_proofs_per_minute_per_user",
        "greater than 0",
    );
    let mut config = base.clone();
    config.tickets.wrong_proofs_per_minute_per_tunnel_server = 0;
    check(
        config,
        "tickets.wrong_proofs_per_minute_per_tunnel_server",
        "greater than 0",
    );
    let mut config = base.clone();
    config.session.cookie_ttl_secs = 0;
    check(config, "session.cookie_ttl_secs", "greater than 0");

    for level in [
        "",
        "loud",
        "info,portcullis=verbose",
        "info;debug",
        "a b=info",
    ] {
        let mut config = base.clone();
        config.log.level = level.into();
        check(config, "log.level", "");
    }
    for level in [
        "warn",
        "info,portcullis_broker=debug",
        "portcullis_broker::http=TRACE",
        "off",
    ] {
        let mut config = base.clone();
        config.log.level = level.into();
        config.validate().unwrap();
    }
}

#[test]
fn certificate_names_cover_the_public_host_and_loopback() {
    let config = BrokerConfig {
        public_url: Some(PublicUrl::parse("https://[2001:db8::1]:8443").unwrap()),
        ..BrokerConfig::default()
    };
    assert_eq!(config.public_url().host(), "2001:db8::1");
    assert_eq!(
        config.certificate_names(),
        ["2001:db8::1", "localhost", "127.0.0.1", "::1"]
    );
    let config = BrokerConfig {
        listen: "0.0.0.0:443".parse().unwrap(),
        ..BrokerConfig::default()
    };
    assert_eq!(
        config.certificate_names(),
        ["localhost", "127.0.0.1", "::1"]
    );
    let config = BrokerConfig {
        tls: TlsConfig {
            mode: TlsMode::Off,
            ..TlsConfig::default()
        },
        ..BrokerConfig::default()
    };
    assert!(!config.tls_enabled());
}

#[test]
fn lifetimes_and_timeouts_are_bounded() {
    for (text, field) in [
        (
            "[tickets]\nclient_ticket_ttl_secs = 9223372036854775807",
            "tickets.client_ticket_ttl_secs",
        ),
        (
            "[tickets]\ntunnel_ticket_ttl_secs = 86401",
            "tickets.tunnel_ticket_ttl_secs",
        ),
        (
            "[tickets]\ntunnel_startup_secs = 86401",
            "tickets.tunnel_startup_secs",
        ),
        (
            "[session]\ncookie_ttl_secs = 9999999999",
            "session.cookie_ttl_secs",
        ),
        ("readiness_timeout_ms = 60001", "readiness_timeout_ms"),
        (
            "[limits]\nheader_read_timeout_secs = 3601",
            "limits.header_read_timeout_secs",
        ),
        (
            "[limits]\nidle_timeout_secs = 3601",
            "limits.idle_timeout_secs",
        ),
        (
            "[limits]\nidle_timeout_secs = 0",
            "limits.idle_timeout_secs",
        ),
        ("[limits]\nmax_connections = 0", "limits.max_connections"),
        (
            "[limits]\nmax_connections = 1048577",
            "limits.max_connections",
        ),
    ] {
        let config = BrokerConfig::from_toml(text, Path::new("b.toml")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(field), "{text}: {error}");
    }
    let config = BrokerConfig::from_toml(
        "[tickets]\nclient_ticket_ttl_secs = 86400\n[session]\ncookie_ttl_secs = 2592000",
        Path::new("b.toml"),
    )
    .unwrap();
    config.validate().unwrap();
}

#[test]
fn the_tunnel_startup_time_is_at_most_the_tunnel_tickets_lifetime() {
    let mut tickets = crate::config::TicketConfig::default();
    assert_eq!(tickets.tunnel_startup(), Duration::from_secs(30));
    tickets.tunnel_ticket_ttl_secs = 20;
    assert_eq!(tickets.tunnel_startup(), Duration::from_secs(20));
}

#[test]
fn the_audit_export_and_the_admin_groups_are_read_and_checked() {
    let config =
        parse("[admin]\ngroups = [\"ops\"]\n[audit]\nexport = \"syslog:udp://127.0.0.1:514\"\n")
            .unwrap();
    assert_eq!(config.admin.groups, ["ops"]);
    assert_eq!(
        config.audit.export,
        Some(crate::config::AuditExport::SyslogUdp(
            "127.0.0.1:514".parse().unwrap()
        ))
    );
    let error = parse_error("[audit]\nexport = \"syslog:tcp://siem:514\"\n");
    assert!(error.contains("audit.export"), "{error}");
    assert!(error.contains("none of"), "{error}");
    let config = parse("[audit]\nexport_queue = 0\n").unwrap();
    assert_eq!(validation_error(&config).0, "audit.export_queue");
}
