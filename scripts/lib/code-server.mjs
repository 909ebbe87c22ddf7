// Starts the project's pinned code-server (a real VS Code 1.100.3: server, Node extension host, web
// workbench) bound to 127.0.0.1, isolated in a throw-away directory, and installs VSIX files into such a
// directory. Used by npm start and npm test. docs/ARCHITECTURE.md ("Running a real VS Code") lists the
// pitfalls this avoids. Linux only: needs /proc (processGroupMembers reads /proc/PID/stat).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
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
/** Whether `port` can be bound on 127.0.0.1 right now. */
export function portIsFree(port) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

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
 * The directories and environment that keep one code-server (and the `--install-extension` runs for it)
 * out of $HOME: settings, extensions, caches and sockets all live under `dir`.
 */
async function isolate(dir, settings, extraEnv) {
  const home = join(dir, 'home');
  const userData = join(dir, 'user-data');
  await Promise.all([home, join(dir, 'tmp'), join(dir, 'extensions'), join(userData, 'User')].map((d) => mkdir(d, { recursive: true })));
  const settingsFile = join(userData, 'User', 'settings.json');
  if (!existsSync(settingsFile)) await writeFile(settingsFile, JSON.stringify({ ...SETTINGS, ...settings }, null, 2));
  const args = ['--user-data-dir', userData, '--extensions-dir', join(dir, 'extensions')];
  const env = {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_DATA_HOME: join(home, '.local/share'),
    XDG_CACHE_HOME: join(home, '.cache'),
    TMPDIR: join(dir, 'tmp'),
    EXTENSIONS_GALLERY: '{}',
    ...extraEnv,
  };
  return { args, env };
}

/**
 * Installs a VSIX with code-server's own `--install-extension` into `dir`'s extensions folder, the one a
 * later `startCodeServer({ dir })` loads. Resolves with the CLI's output; rejects when it fails.
 */
export async function installExtension(vsix, dir) {
  if (!codeServerInstalled()) throw new Error('code-server is not installed; run: bash scripts/install-code-server.sh');
  const { args, env } = await isolate(dir);
  const child = spawn(codeServerBin, [...args, '--install-extension', vsix], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (out += b));
  // 'close', not 'exit': the output streams have then delivered everything for the message below.
  const code = await new Promise((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`code-server --install-extension ${vsix} exited with ${code}:\n${out}`);
  return out;
}

/** The processes (not zombies) of a process group, from /proc. */
export function processGroupMembers(pgid) {
  const members = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    // Fields after the command (which may hold spaces and parentheses): state, ppid, pgrp, ...
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') members.push(Number(name));
  }
  return members;
}

/** Resolves true once no process of the group is left, false when `ms` pass first. */
export async function groupGone(pgid, ms) {
  const deadline = Date.now() + ms;
  while (processGroupMembers(pgid).length > 0) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/**
 * @param {{ env?: Record<string,string>, port?: number, settings?: object, dir?: string }} options
 *   dir: keep state (settings, open editors, installed extensions) there across runs instead of in a
 *   throw-away directory.
 */
export async function startCodeServer(options = {}) {
  if (!codeServerInstalled()) throw new Error('code-server is not installed; run: bash scripts/install-code-server.sh');
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'iommu-lab-cs-')));
  const { args: isolation, env } = await isolate(dir, options.settings, options.env);
  const port = options.port ?? (await freePort());
  await writeFile(join(dir, 'config.yaml'), `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  const args = [
    '--config', join(dir, 'config.yaml'),
    ...isolation,
    '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust',
    '--disable-getting-started-override', '--disable-proxy', '--ignore-last-opened',
  ];
  // Its own process group, so that stop() also ends the extension host and language servers it spawned
  // (and a terminal's Ctrl-C reaches only the script that started it, which then stops the whole group).
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
    /** The process group: code-server, its server, the extension host and what that started. */
    pgid: child.pid,
    /** Ends every process of the group (SIGTERM, then SIGKILL after 5 s) and waits until none is left. */
    async stop() {
      process.removeListener('exit', killGroup);
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      if (!(await groupGone(child.pid, 5000))) {
        killGroup();
        await groupGone(child.pid, 5000);
      }
      if (!options.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
