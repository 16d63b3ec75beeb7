// A stand-in for the launcher's `runtime` module, for running launcher scripts under node
// in the broker's tests (tests/launcher_scripts.rs). It records what a script asks the
// launcher to do and prints the record as JSON on exit.
//
// Set up by the environment:
//   PORTCULLIS_MOCK_DATA         the `data` document (JSON)
//   PORTCULLIS_MOCK_EXECUTABLES  JSON array of the programs that exist: bare names (found
//                                in PATH) or full paths (found in an extra directory)
//   PORTCULLIS_MOCK_PORTCULLIS   "1": a Portcullis launcher (the `Portcullis` global, and
//                                startTunnel answers a host); else an OpenUDS 5 launcher

const calls = [];
const record = (call) => calls.push(call);
process.on('exit', () => process.stdout.write(JSON.stringify(calls)));

globalThis.data = JSON.parse(process.env.PORTCULLIS_MOCK_DATA);
const executables = JSON.parse(process.env.PORTCULLIS_MOCK_EXECUTABLES || '[]');
const portcullis = process.env.PORTCULLIS_MOCK_PORTCULLIS === '1';

const expectString = (value, what) => {
    if (typeof value !== 'string') throw new TypeError(`${what} must be a string`);
};

export const Process = {
    findExecutable(name, extraDirs = []) {
        expectString(name, 'name');
        if (executables.includes(name)) return `/usr/bin/${name}`;
        for (const dir of extraDirs) {
            for (const separator of ['/', '\\']) {
                const path = `${dir}${separator}${name}`;
                if (executables.includes(path)) return path;
            }
        }
        return null;
    },
    launch(path, args, options) {
        expectString(path, 'path');
        if (!Array.isArray(args) || !args.every((arg) => typeof arg === 'string')) {
            throw new TypeError('args must be an array of strings');
        }
        if (options !== undefined && !portcullis) {
            throw new TypeError('OpenUDS 5 launchers take no launch options');
        }
        record({ fn: 'launch', path, args, stdin: options?.stdin ?? null });
        return 100 + calls.length;
    },
    async launchAndWait(path, args) {
        expectString(path, 'path');
        record({ fn: 'launchAndWait', path, args });
        return { stdout: '', stderr: '' };
    },
    async wait(handle) {
        record({ fn: 'wait', handle });
    },
    async sleep(ms) {
        record({ fn: 'sleep', ms });
    },
};

export const Tasks = {
    async startTunnel(options) {
        record({ fn: 'startTunnel', options });
        const port = options.local_port || 50000;
        return portcullis ? { host: '127.0.0.1', port } : { port };
    },
    addWaitableApp(handle) {
        record({ fn: 'addWaitableApp', handle });
    },
    addEarlyUnlinkableFile(path) {
        record({ fn: 'addEarlyUnlinkableFile', path });
    },
    addLateUnlinkableFile(path) {
        record({ fn: 'addLateUnlinkableFile', path });
    },
};

export const File = {
    createTempFile(folder, content, extension) {
        expectString(content, 'content');
        record({ fn: 'createTempFile', folder, content, extension });
        return `/tmp/portcullis-mock.${extension.replace(/^\./, '')}`;
    },
};

export const Logger = Object.fromEntries(
    ['trace', 'debug', 'info', 'warn', 'error'].map((level) => [
        level,
        (message) => record({ fn: 'log', level, message: String(message) }),
    ]),
);

export const Utils = {
    cryptProtectData(text) {
        expectString(text, 'text');
        record({ fn: 'cryptProtectData' });
        return '01000000d08c9ddf0115d1118c7a00c04fc297eb';
    },
};

if (portcullis) {
    globalThis.Portcullis = {
        version: '0.0.0-mock',
        os: 'linux',
        message(text) {
            record({ fn: 'message', text });
        },
        async waitUntilClosed(text) {
            record({ fn: 'waitUntilClosed', text });
        },
        vncPasswordFile(password) {
            expectString(password, 'password');
            record({ fn: 'vncPasswordFile' });
            return '/tmp/portcullis-vnc-mock/passwd';
        },
        sshIdentity() {
            record({ fn: 'sshIdentity' });
            return {
                identityFile: '/tmp/portcullis-ssh-mock/id_ed25519',
                certificateFile: '/tmp/portcullis-ssh-mock/id_ed25519-cert.pub',
            };
        },
    };
}
