// Portcullis launcher script: SSH on Linux, with OpenSSH `ssh` in a terminal emulator.
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Runs on Portcullis and OpenUDS 5 launchers. API and params: docs/launcher-scripts.md.
import { Process, Tasks, Logger } from 'runtime';

// Terminal emulators in order of preference, with how each runs a command.
const TERMINALS = [
    { name: 'x-terminal-emulator', run: (command) => ['-e', ...command] },
    { name: 'gnome-terminal', run: (command) => ['--', ...command] },
    { name: 'konsole', run: (command) => ['-e', ...command] },
    { name: 'xfce4-terminal', run: (command) => ['-x', ...command] },
    { name: 'kitty', run: (command) => command },
    { name: 'alacritty', run: (command) => ['-e', ...command] },
    { name: 'xterm', run: (command) => ['-e', ...command] },
];

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
        // Only this launch's key and its certificate, valid for minutes, in a private
        // directory the launcher removes at the end.
        args.push('-i', identity.identityFile);
        args.push('-o', `CertificateFile=${identity.certificateFile}`);
        args.push('-o', 'IdentitiesOnly=yes');
    }
    if (params.host_key_alias) args.push('-o', `HostKeyAlias=${params.host_key_alias}`);
    args.push('--', host);
    return args;
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

const ssh = Process.findExecutable('ssh');
if (!ssh) {
    throw new Error('The OpenSSH client (ssh) was not found. Install it (package openssh-client).');
}
const terminal = TERMINALS.map((entry) => ({
    ...entry,
    path: Process.findExecutable(entry.name),
})).find((entry) => entry.path);
if (!terminal) {
    throw new Error('No terminal emulator was found to run ssh in (for example xterm).');
}
const target = await connectTarget();
Logger.info(`Running ssh in ${terminal.path}`);
const command = [ssh, ...sshArgs(data, target.host, target.port)];
const app = Process.launch(terminal.path, terminal.run(command));
// Some terminals hand the window to a server process and exit at once; the tunnel then
// stays open while ssh's connection does.
Tasks.addWaitableApp(app);
if (sshIdentity(data)) {
    // The key and certificate are removed when the launcher ends: a terminal that handed
    // ssh to its server and exited must not end the launcher before ssh has signed in.
    await Process.sleep(IDENTITY_GRACE_MS);
}
