// Starts the project's pinned code-server (a real VS Code 1.100.3: server, Node extension host, web
// workbench) bound to 127.0.0.1, isolated in a throw-away directory. Used by npm start and npm test.
// The pitfalls this avoids are listed in ../shared/docs/vscode-harness.md.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const root = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
export const codeServerBin = join(root, 'tools/code-server/node_modules/.bin/code-server');

export function codeServerInstalled() {
  return existsSync(codeServerBin);
}

/** A port the kernel says is free right now. */
export async function freePort(preferred = 0) {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', (e) => (preferred ? freePort(0).then(resolve, reject) : reject(e)));
    srv.listen(preferred, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const SETTINGS = {
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'extensions.ignoreRecommendations': true,
  'workbench.enableExperiments': false,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'npm.fetchOnlinePackageInfo': false,
  'typescript.disableAutomaticTypeAcquisition': true,
  'git.enabled': false,
  'security.workspace.trust.enabled': false,
  'window.commandCenter': false,
};

/**
 * @param {{ env?: Record<string,string>, port?: number, settings?: object, dir?: string }} options
 *   dir: keep state (settings, open editors) there across runs instead of in a throw-away directory.
 */
export async function startCodeServer(options = {}) {
  if (!codeServerInstalled()) throw new Error('code-server is not installed; run: bash scripts/install-code-server.sh');
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'iommu-lab-cs-')));
  const home = join(dir, 'home');
  const userData = join(dir, 'user-data');
  await Promise.all([home, join(dir, 'tmp'), join(dir, 'extensions'), join(userData, 'User')].map((d) => mkdir(d, { recursive: true })));
  const port = options.port ?? (await freePort());
  await writeFile(join(dir, 'config.yaml'), `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  const settingsFile = join(userData, 'User', 'settings.json');
  if (!existsSync(settingsFile)) await writeFile(settingsFile, JSON.stringify({ ...SETTINGS, ...options.settings }, null, 2));

  const args = [
    '--config', join(dir, 'config.yaml'),
    '--user-data-dir', userData,
    '--extensions-dir', join(dir, 'extensions'),
    '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust',
    '--disable-getting-started-override', '--disable-proxy', '--ignore-last-opened',
  ];
  const env = {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_DATA_HOME: join(home, '.local/share'),
    XDG_CACHE_HOME: join(home, '.cache'),
    TMPDIR: join(dir, 'tmp'),
    EXTENSIONS_GALLERY: '{}',
    ...options.env,
  };
  // Its own process group, so that stop() also ends the extension host and language servers it spawned.
  const child = spawn(codeServerBin, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const collect = (b) => {
    log += b.toString();
    if (log.length > 200_000) log = log.slice(-100_000);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const killGroup = () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };
  process.once('exit', killGroup);

  const url = `http://127.0.0.1:${port}`;
  const started = Date.now();
  for (;;) {
    const gone = await Promise.race([exited, new Promise((r) => setTimeout(() => r(undefined), 100))]);
    if (gone) throw new Error(`code-server exited during start-up (${JSON.stringify(gone)}):\n${log}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() - started > 60_000) {
      killGroup();
      throw new Error(`code-server did not answer /healthz within 60 s:\n${log}`);
    }
  }

  return {
    url,
    port,
    dir,
    readyMs: Date.now() - started,
    log: () => log,
    /** A path on this machine as the workbench's remote authority sees it. */
    remoteUri: (path) => `vscode-remote://127.0.0.1:${port}${path}`,
    /** The workbench URL opening `folder`, with an optional development payload. */
    workbenchUrl: ({ folder, payload }) => {
      const q = new URLSearchParams();
      if (folder) q.set('folder', folder);
      if (payload) q.set('payload', JSON.stringify(payload));
      return `${url}/?${q.toString()}`;
    },
    async stop() {
      process.removeListener('exit', killGroup);
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      const done = await Promise.race([exited, new Promise((r) => setTimeout(() => r(undefined), 5000))]);
      if (!done) killGroup();
      if (!options.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
