// Portcullis launcher script: SSH on macOS, with OpenSSH `ssh` in Terminal.app.
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Runs on Portcullis and OpenUDS 5 launchers. API and params: docs/launcher-scripts.md.
import { Process, Tasks, Logger } from 'runtime';

/** How long the launcher keeps the SSH identity at least, for ssh to sign in with it. */
const IDENTITY_GRACE_MS = 20000;

/**
 * The key and certificate files of this launch, when the broker signed a certificate for
 * the Portcullis launcher's own key (`data.ssh_certificate`); null otherwise (OpenUDS 5
 * launchers: ssh signs in however else the server allows).
 */
function sshIdentity(params) {
    if (typeof Portcullis === 'undefined' || !params.ssh_certificate) return null;
    return Portcullis.sshIdentity();
}

/** `ssh`'s arguments for `params` (the `data` document), connecting to `host` and `port`. */
function sshArgs(params, host, port) {
    if (host.startsWith('-')) {
        throw new Error('The service has an invalid host name; ask your administrator.');
    }
    const args = ['-p', String(port)];
    if (params.username) args.push('-l', params.username);
    const identity = sshIdentity(params);
    if (identity) {
        args.push('-i', identity.identityFile);
        args.push('-o', `CertificateFile=${identity.certificateFile}`);
        args.push('-o', 'IdentitiesOnly=yes');
    }
    if (params.host_key_alias) args.push('-o', `HostKeyAlias=${params.host_key_alias}`);
    args.push('--', host);
    return args;
}

/** `words` as one POSIX shell command line, each word in single quotes. */
function shellCommand(words) {
    return words.map((word) => `'${String(word).replace(/'/g, `'\\''`)}'`).join(' ');
}

/** `osascript` arguments that run the shell `command` in a new Terminal window. */
function terminalScript(command) {
    const literal = `"${command.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
    return [
        '-e', 'tell application "Terminal"',
        '-e', 'activate',
        '-e', `do script ${literal}`,
        '-e', 'end tell',
    ];
}

/** Where ssh connects: the service itself, or a local tunnel endpoint. */
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

const ssh = Process.findExecutable('ssh', ['/usr/bin']);
const osascript = Process.findExecutable('osascript', ['/usr/bin']);
if (!ssh || !osascript) {
    throw new Error('The OpenSSH client (ssh) or osascript was not found on this Mac.');
}
const target = await connectTarget();
const command = shellCommand([ssh, ...sshArgs(data, target.host, target.port)]);
Logger.info('Running ssh in Terminal');
// osascript returns once Terminal has the command; the tunnel then stays open while ssh's
// connection does.
Process.launch(osascript, terminalScript(command));
if (sshIdentity(data)) {
    // osascript returns at once, and the key and certificate go when the launcher ends:
    // stay until ssh has signed in with them.
    await Process.sleep(IDENTITY_GRACE_MS);
}
