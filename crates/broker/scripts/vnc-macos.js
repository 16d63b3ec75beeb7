// Portcullis launcher script: VNC on macOS, with the built-in Screen Sharing app.
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Runs on Portcullis and OpenUDS 5 launchers. API and params: docs/launcher-scripts.md.
import { Process, Tasks, Logger } from 'runtime';

/** The `vnc://` URL of `host` and `port`, with an IPv6 host in brackets. */
function vncUrl(host, port) {
    return host.includes(':') ? `vnc://[${host}]:${port}` : `vnc://${host}:${port}`;
}

/** Where Screen Sharing connects: the service itself, or a local tunnel endpoint. */
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

const open = Process.findExecutable('open', ['/usr/bin']);
if (!open) {
    throw new Error('Cannot open Screen Sharing: /usr/bin/open is missing.');
}
const target = await connectTarget();
Logger.info('Opening Screen Sharing');
// `open` returns at once; the tunnel stays open while Screen Sharing's connection does.
Process.launch(open, [vncUrl(target.host, target.port)]);
