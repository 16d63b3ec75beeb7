// Portcullis launcher script: VNC on Linux, with a VNC viewer (TigerVNC and compatible
// `vncviewer`s, else Remmina or KRDC).
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Runs on Portcullis and OpenUDS 5 launchers. API and params: docs/launcher-scripts.md.
import { Process, Tasks, Logger } from 'runtime';

/** `host` for a URL or `host::port`: an IPv6 address in brackets. */
function bracketed(host) {
    return host.includes(':') ? `[${host}]` : host;
}

/**
 * TigerVNC's arguments for a password: a password file only this user can read, removed
 * when the launcher ends (Portcullis launchers). A password never goes on the command line,
 * and OpenUDS 5 launchers, which cannot write such a file, let the viewer ask.
 */
function passwordArgs(params) {
    if (typeof Portcullis === 'undefined' || !params.password) return [];
    return ['-passwd', Portcullis.vncPasswordFile(params.password)];
}

// Viewers in order of preference, with their arguments for a host and port.
const VIEWERS = [
    {
        name: 'vncviewer',
        args: (host, port) => [...passwordArgs(data), `${bracketed(host)}::${port}`],
    },
    {
        name: 'xtigervncviewer',
        args: (host, port) => [...passwordArgs(data), `${bracketed(host)}::${port}`],
    },
    { name: 'remmina', args: (host, port) => ['-c', `vnc://${bracketed(host)}:${port}`] },
    { name: 'krdc', args: (host, port) => [`vnc://${bracketed(host)}:${port}`] },
];

/** Where the viewer connects: the service itself, or a local tunnel endpoint. */
async function connectTarget() {
    if (data.transport !== 'tunneled') {
        return { host: data.host, port: data.port };
    }
    const tunnel = data.tunnel;
    const local = await Tasks.startTunnel({
        addr: tunnel.host,
        port: tunnel.port,
        ticket: tunnel.ticket,
        startup_time_ms: tunnel.startup_time,
        check_certificate: tunnel.verify_ssl,
        // OpenUDS 5 launchers need the secret back; Portcullis launchers ignore it.
        shared_secret: data.shared_secret,
        tls: tunnel.tls,
        protocol: tunnel.protocol,
    });
    return { host: local.host || '127.0.0.1', port: local.port };
}

const viewer = VIEWERS.map((entry) => ({
    ...entry,
    path: Process.findExecutable(entry.name),
})).find((entry) => entry.path);
if (!viewer) {
    throw new Error(
        'No VNC viewer was found. Install one (for example the tigervnc-viewer package).',
    );
}
const target = await connectTarget();
Logger.info(`Using the VNC viewer ${viewer.path}`);
const app = Process.launch(viewer.path, viewer.args(target.host, target.port));
Tasks.addWaitableApp(app);
