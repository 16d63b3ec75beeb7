// Portcullis launcher script: RDP on macOS, with FreeRDP if installed, else an .rdp file
// opened with the default RDP app (Microsoft's "Windows App").
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Runs on Portcullis and OpenUDS 5 launchers. API and params: docs/launcher-scripts.md.
import { Process, Tasks, File, Logger } from 'runtime';

// The SDL clients are native; the X11 ones need XQuartz.
const FREERDP = ['sdl-freerdp3', 'sdl-freerdp', 'xfreerdp3', 'xfreerdp'];
const HOMEBREW_DIRS = ['/opt/homebrew/bin', '/usr/local/bin'];

/** `host:port`, with an IPv6 host in brackets. */
function joinHostPort(host, port) {
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * What FreeRDP reads on its standard input (`/from-stdin:force`): the answers to its
 * prompts for what the command line does not give (domain, then password), or null. A
 * password never goes on the command line, where every local user can read it; OpenUDS 5
 * launchers, which cannot write to a program's input, let FreeRDP ask instead.
 */
function freerdpInput(params) {
    if (typeof Portcullis === 'undefined' || !params.password || !params.username) return null;
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

/**
 * The text of an .rdp file for `params`, connecting to `address`. The password cannot be
 * stored in it on macOS: the app asks for it. Throws if a value holds a line break.
 */
function buildRdpFile(params, address) {
    const flag = (on) => (on ? 1 : 0);
    const lines = [
        `full address:s:${address}`,
        `screen mode id:i:${params.fullscreen ? 2 : 1}`,
        `use multimon:i:${flag(params.multimon)}`,
        `dynamic resolution:i:1`,
        `redirectclipboard:i:${flag(params.clipboard)}`,
        `audiomode:i:${params.audio ? 0 : 2}`,
        `redirectprinters:i:${flag(params.printers)}`,
        `drivestoredirect:s:${params.drives ? '*' : ''}`,
    ];
    if (!params.fullscreen && params.width && params.height) {
        lines.push(`desktopwidth:i:${params.width}`, `desktopheight:i:${params.height}`);
    }
    if (params.username) {
        const user = params.domain ? `${params.domain}\\${params.username}` : params.username;
        lines.push(`username:s:${user}`);
    }
    for (const line of lines) {
        if (/[\r\n]/.test(line)) {
            throw new Error('The service settings hold a line break; ask your administrator.');
        }
    }
    return lines.join('\r\n') + '\r\n';
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

const freerdp = FREERDP.map((name) => Process.findExecutable(name, HOMEBREW_DIRS)).find(
    (path) => path,
);
if (freerdp) {
    Logger.info(`Using the RDP client ${freerdp}`);
    const args = freerdpArgs(data, await connectAddress());
    const input = freerdpInput(data);
    const app =
        input === null
            ? Process.launch(freerdp, args)
            : Process.launch(freerdp, args, { stdin: input });
    Tasks.addWaitableApp(app);
} else {
    const open = Process.findExecutable('open', ['/usr/bin']);
    if (!open) {
        throw new Error('Cannot open the RDP client: /usr/bin/open is missing.');
    }
    const rdpFile = File.createTempFile(null, buildRdpFile(data, await connectAddress()), 'rdp');
    // `open` returns at once; the app reads the file later, so it goes when the launcher ends.
    Tasks.addLateUnlinkableFile(rdpFile);
    Logger.info('No FreeRDP found: opening an .rdp file with the default RDP app');
    Process.launch(open, [rdpFile]);
}
