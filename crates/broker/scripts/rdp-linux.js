// Portcullis launcher script: RDP on Linux, with FreeRDP.
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Runs on Portcullis and OpenUDS 5 launchers. API and params: docs/launcher-scripts.md.
import { Process, Tasks, Logger } from 'runtime';

// FreeRDP 3 first; the Wayland clients last, as they lack some redirections.
const CLIENTS = ['xfreerdp3', 'xfreerdp', 'wlfreerdp3', 'wlfreerdp'];

/** `host:port`, with an IPv6 host in brackets. */
function joinHostPort(host, port) {
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

// Portcullis launchers can write to a program's standard input; OpenUDS 5 launchers cannot.
const PORTCULLIS = typeof Portcullis !== 'undefined';

/**
 * What FreeRDP reads on its standard input (`/from-stdin:force`): the answers to its
 * prompts for what the command line does not give, in its order (domain, then password),
 * or null when there is no password to hand over. A password never goes on the command
 * line, where every local user can read it (`ps`); OpenUDS 5 launchers, which cannot write
 * to a program's input, let FreeRDP ask the user instead.
 */
function freerdpInput(params) {
    if (!PORTCULLIS || !params.password || !params.username) return null;
    return `${params.domain ? '' : '\n'}${params.password}\n`;
}

/** FreeRDP's arguments for `params` (the `data` document), connecting to `address`. */
function freerdpArgs(params, address) {
    const args = [`/v:${address}`, `/t:${params.name}`];
    if (params.username) args.push(`/u:${params.username}`);
    if (params.domain) args.push(`/d:${params.domain}`);
    if (freerdpInput(params) !== null) args.push('/from-stdin:force');
    if (params.fullscreen) {
        args.push('/f');
    } else if (params.width && params.height) {
        args.push(`/size:${params.width}x${params.height}`);
    } else {
        args.push('/dynamic-resolution');
    }
    if (params.multimon) args.push('/multimon');
    if (!params.clipboard) args.push('-clipboard');
    if (params.audio) args.push('/sound');
    if (params.printers) args.push('/printer');
    if (params.drives) args.push('+home-drive');
    return args;
}

/** Where the client connects: the service itself, or a local tunnel endpoint. */
async function connectAddress() {
    if (data.transport !== 'tunneled') {
        return joinHostPort(data.host, data.port);
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
    return joinHostPort(local.host || '127.0.0.1', local.port);
}

const client = CLIENTS.map((name) => Process.findExecutable(name)).find((path) => path);
if (!client) {
    throw new Error(
        'No FreeRDP client was found (xfreerdp3, xfreerdp, wlfreerdp3 or wlfreerdp). ' +
            'Install FreeRDP (for example the freerdp3-x11 package) and try again.',
    );
}
Logger.info(`Using the RDP client ${client}`);
const args = freerdpArgs(data, await connectAddress());
const input = freerdpInput(data);
const app =
    input === null ? Process.launch(client, args) : Process.launch(client, args, { stdin: input });
Tasks.addWaitableApp(app);
