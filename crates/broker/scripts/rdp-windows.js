// Portcullis launcher script: RDP on Windows, with mstsc and a generated .rdp file.
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Runs on Portcullis and OpenUDS 5 launchers. API and params: docs/launcher-scripts.md.
import { Process, Tasks, File, Logger, Utils } from 'runtime';

/** `host:port`, with an IPv6 host in brackets. */
function joinHostPort(host, port) {
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The text of an .rdp file for `params` (the `data` document), connecting to `address`.
 * `protectedPassword` is the DPAPI blob of the password as hex, or null to let mstsc ask.
 * Throws if a value holds a line break, which would add settings to the file.
 */
function buildRdpFile(params, address, protectedPassword) {
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
        'authentication level:i:2',
        'enablecredsspsupport:i:1',
    ];
    if (!params.fullscreen && params.width && params.height) {
        lines.push(`desktopwidth:i:${params.width}`, `desktopheight:i:${params.height}`);
    }
    if (params.username) {
        const user = params.domain ? `${params.domain}\\${params.username}` : params.username;
        lines.push(`username:s:${user}`);
    }
    if (protectedPassword) {
        lines.push(`password 51:b:${protectedPassword}`, 'prompt for credentials:i:0');
    }
    for (const line of lines) {
        if (/[\r\n]/.test(line)) {
            throw new Error('The service settings hold a line break; ask your administrator.');
        }
    }
    return lines.join('\r\n') + '\r\n';
}

/** The password as mstsc reads it from an .rdp file, or null (mstsc then asks for it). */
function protectPassword(password) {
    if (!password) return null;
    try {
        return Utils.cryptProtectData(password);
    } catch (error) {
        Logger.warn(`Cannot protect the password for mstsc, it will ask for it: ${error}`);
        return null;
    }
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

/** The host part of `host:port` (an IPv6 host without its brackets). */
function hostOf(address) {
    const host = address.slice(0, address.lastIndexOf(':'));
    return host.startsWith('[') ? host.slice(1, -1) : host;
}

/**
 * Portcullis launchers: stores the account in Windows' credential manager for the
 * connection's address (`cmdkey /generic:TERMSRV/<host>`), where mstsc finds it; returns
 * the entry's name, to delete when mstsc ends, or null without a password. cmdkey's command
 * line holds the password for the moment it runs; on Windows only the same user and
 * administrators can read another process's command line.
 */
async function storeCredential(params, address) {
    if (typeof Portcullis === 'undefined' || !params.password || !params.username) return null;
    const cmdkey = Process.findExecutable('cmdkey.exe', ['C:\\Windows\\System32']);
    if (!cmdkey) {
        Logger.warn('cmdkey.exe was not found: mstsc will ask for the password');
        return null;
    }
    const target = `TERMSRV/${hostOf(address)}`;
    const user = params.domain ? `${params.domain}\\${params.username}` : params.username;
    await Process.launchAndWait(cmdkey, [`/generic:${target}`, `/user:${user}`, `/pass:${params.password}`]);
    return { cmdkey, target };
}

const mstsc = Process.findExecutable('mstsc.exe', ['C:\\Windows\\System32']);
if (!mstsc) {
    throw new Error('The Remote Desktop client (mstsc.exe) was not found on this computer.');
}
const address = await connectAddress();
const stored = await storeCredential(data, address);
// OpenUDS 5 launchers: the password as a DPAPI blob in the .rdp file, as before.
const blob = stored || typeof Portcullis !== 'undefined' ? null : protectPassword(data.password);
const rdpFile = File.createTempFile(null, buildRdpFile(data, address, blob), 'rdp');
// mstsc reads the file when it starts; it may hold the protected password, so it goes early.
Tasks.addEarlyUnlinkableFile(rdpFile);
const app = Process.launch(mstsc, [rdpFile]);
Tasks.addWaitableApp(app);
if (stored) {
    // The credential manager's entry lives as long as the session: removed when mstsc ends.
    await Process.wait(app);
    await Process.launchAndWait(stored.cmdkey, [`/delete:${stored.target}`]);
}
