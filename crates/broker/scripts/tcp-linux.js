// Portcullis launcher script: any TCP service. Shows the address to connect to and, for a
// tunneled service, keeps the local tunnel port open until the user disconnects.
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Needs a Portcullis launcher (OpenUDS 5 launchers cannot show the address).
// API and params: docs/launcher-scripts.md.
import { Tasks, Logger } from 'runtime';

/** `host:port`, with an IPv6 host in brackets. */
function joinHostPort(host, port) {
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

if (typeof Portcullis === 'undefined') {
    throw new Error('This service needs the Portcullis launcher, which shows its local port.');
}
if (data.transport !== 'tunneled') {
    const address = joinHostPort(data.host, data.port);
    Portcullis.message(`${data.name}: connect your application to ${address}.`);
} else {
    const tunnel = data.tunnel;
    const local = await Tasks.startTunnel({
        addr: tunnel.host,
        port: tunnel.port,
        ticket: tunnel.ticket,
        startup_time_ms: tunnel.startup_time,
        check_certificate: tunnel.verify_ssl,
        local_port: data.local_port,
        keep_listening_after_timeout: true,
        tls: tunnel.tls,
        protocol: tunnel.protocol,
    });
    const address = joinHostPort(local.host || '127.0.0.1', local.port);
    Logger.info(`Tunnel open at ${address}`);
    await Portcullis.waitUntilClosed(
        `${data.name} is reachable at ${address}.\n` +
            'Connect your application there. Keep this window open while you use it: ' +
            'disconnecting closes the port.',
    );
}
