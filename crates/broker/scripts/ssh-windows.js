// Portcullis launcher script: SSH on Windows, with the OpenSSH client (ssh.exe) in its own
// console window.
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Runs on Portcullis and OpenUDS 5 launchers. API and params: docs/launcher-scripts.md.
import { Process, Tasks, Logger } from 'runtime';

/** `ssh`'s arguments for `params` (the `data` document), connecting to `host` and `port`. */
function sshArgs(params, host, port) {
    if (host.startsWith('-')) {
        throw new Error('The service has an invalid host name; ask your administrator.');
    }
    const args = ['-p', String(port)];
    if (params.username) args.push('-l', params.username);
    // The launch's own key and its certificate, valid for minutes, in a directory of the
    // user's removed when the launcher ends (Portcullis launchers; OpenUDS 5 launchers get
    // no certificate and ssh signs in however else the server allows).
    const identity =
        typeof Portcullis !== 'undefined' && params.ssh_certificate
            ? Portcullis.sshIdentity()
            : null;
    if (identity) {
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

const ssh = Process.findExecutable('ssh.exe', ['C:\\Windows\\System32\\OpenSSH']);
if (!ssh) {
    throw new Error(
        'The OpenSSH client (ssh.exe) was not found. ' +
            'Add it in Settings > Apps > Optional features.',
    );
}
const target = await connectTarget();
Logger.info(`Running ${ssh}`);
const app = Process.launch(ssh, sshArgs(data, target.host, target.port));
Tasks.addWaitableApp(app);
