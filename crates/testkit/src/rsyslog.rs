//! A real rsyslog for one test: listening on a loopback UDP port and on a datagram socket
//! of its own (never `/dev/log`), writing every message it parses to a file with the RFC
//! 5424 fields it found; configuration, state and output in a temporary directory; stopped
//! when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::program;

/// How long rsyslog may take to take messages.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `rsyslogd -n`; stopped on drop.
pub struct Rsyslog {
    child: Child,
    udp: SocketAddr,
    socket: PathBuf,
    output: PathBuf,
    dir: TempDir,
}

impl Rsyslog {
    /// Writes the configuration, starts rsyslog and waits until a message sent to its UDP
    /// port and one sent to its socket come out in its file.
    pub fn start() -> Self {
        let rsyslogd = program("rsyslogd", "rsyslog");
        let dir = tempfile::tempdir().unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .unwrap()
            .port();
        let udp = SocketAddr::from(([127, 0, 0, 1], port));
        let socket = dir.path().join("log");
        let output = dir.path().join("messages");
        let config = dir.path().join("rsyslog.conf");
        // One line per message: the fields rsyslog parsed out of RFC 5424, then the message.
        std::fs::write(
            &config,
            format!(
                "global(workDirectory=\"{dir}\")\n\
                 module(load=\"imudp\")\n\
                 module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")\n\
                 input(type=\"imuxsock\" Socket=\"{socket}\" UseSpecialParser=\"off\" ParseHostname=\"on\")\n\
                 template(name=\"fields\" type=\"string\" string=\"%syslogfacility-text%.%syslogseverity-text% %hostname% %app-name% %procid% %msgid% %structured-data% %msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{output}\" template=\"fields\")\n",
                dir = dir.path().display(),
                socket = socket.display(),
                output = output.display(),
            ),
        )
        .unwrap();
        let child = Command::new(rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rsyslog = Self {
            child,
            udp,
            socket,
            output,
            dir,
        };
        rsyslog.wait_ready();
        rsyslog
    }

    /// Sends probes to both inputs until both come out.
    fn wait_ready(&self) {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let unix = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let probe =
                |via: &str| format!("<14>1 - - fixture - probe - rsyslog-ready-{via}-{attempt}");
            let _ = sender.send_to(probe("udp").as_bytes(), self.udp);
            let _ = unix.send_to(probe("unix").as_bytes(), &self.socket);
            std::thread::sleep(Duration::from_millis(100));
            let text = self.messages();
            if text.contains("rsyslog-ready-udp-") && text.contains("rsyslog-ready-unix-") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not take messages within {START_TIMEOUT:?} (config in {})",
                self.dir.path().display()
            );
        }
    }

    /// The loopback UDP address it listens on.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The datagram socket it listens on.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Everything it wrote so far: one line per message, `facility.severity hostname
    /// app-name procid msgid structured-data message`.
    pub fn messages(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
