// Portcullis launcher script: VNC on Windows, with TigerVNC, RealVNC, UltraVNC or TightVNC.
//
// Built into the broker; a file of the same name in the broker's `scripts_dir` replaces it.
// Runs on Portcullis and OpenUDS 5 launchers. API and params: docs/launcher-scripts.md.
import { Process, Tasks, Logger } from 'runtime';

// Viewers in order of preference: the program and where its installer puts it. Every one
// of them reads `host::port` as a host and a TCP port.
const VIEWERS = [
    {
        name: 'vncviewer.exe',
        dirs: [
            'C:\\Program Files\\TigerVNC',
            'C:\\Program Files\\RealVNC\\VNC Viewer',
            'C:\\Program Files\\uvnc bvba\\UltraVNC',
        ],
    },
    { name: 'tvnviewer.exe', dirs: ['C:\\Program Files\\TightVNC'] },
];

/** `host::port`, with an IPv6 host in brackets. */
function vncAddress(host, port) {
    return host.includes(':') ? `[${host}]::${port}` : `${host}::${port}`;
}

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

const viewer = VIEWERS.map(({ name, dirs }) => Process.findExecutable(name, dirs)).find(
    (path) => path,
);
if (!viewer) {
    throw new Error('No VNC viewer was found. Install TigerVNC, RealVNC, UltraVNC or TightVNC.');
}
const target = await connectTarget();
Logger.info(`Using the VNC viewer ${viewer}`);
const app = Process.launch(viewer, [vncAddress(target.host, target.port)]);
Tasks.addWaitableApp(app);
