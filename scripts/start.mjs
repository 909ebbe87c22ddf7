// `npm start`: install what is missing, build, and open examples/ in a real VS Code with the extension loaded.
// With VS Code's `code` CLI on PATH it opens a desktop window in development mode; otherwise it serves the
// project's pinned code-server on 127.0.0.1 and prints the URL to open in a browser.
// Options: --port N (code-server port, which must be free; default 8080 or the next free one to 8099), --watch (rebuild on change).
//
// Stopping: Ctrl-C (SIGINT to the terminal's process group), SIGTERM or SIGHUP to this script, or the end
// of the process that started it all stop everything it started: code-server with every process of its
// group (server, extension host, language servers) and the --watch build. The last case is the one npm
// makes: `npm start` runs this script under `sh -c`, and a SIGTERM to npm reaches only that shell, which
// dies of it and leaves this script behind with a new parent; so the script watches its parent too.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { freePort, groupGone, portIsFree, startCodeServer } from './lib/code-server.mjs';
import { ensureNpmPackages, root } from './lib/npm-packages.mjs';

const examples = join(root, 'examples');
const run = (cmd, args) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit' }).status === 0;
const portAt = process.argv.indexOf('--port');
const portText = portAt > 0 ? process.argv[portAt + 1] : undefined;
const portValid = /^\d{1,5}$/.test(portText ?? '') && Number(portText) >= 1 && Number(portText) <= 65535;
if (portAt > 0 && !portValid) {
  console.error(`npm start: --port needs a port number, 1-65535 (got ${portText === undefined ? 'nothing' : `'${portText}'`})`);
  process.exit(2);
}

/**
 * The port asked for with --port, which must be free (a busy one is an error, not a surprise elsewhere); by
 * default 8080, or the next free one up to 8099, or any free one, said aloud when it is not 8080.
 */
async function choosePort() {
  if (portAt > 0) {
    const wanted = Number(portText);
    if (await portIsFree(wanted)) return wanted;
    console.error(`npm start: port ${wanted} is in use on 127.0.0.1 (another npm start? pick another with --port N)`);
    process.exit(1);
  }
  for (let p = 8080; p < 8100; p++) {
    if (await portIsFree(p)) {
      if (p !== 8080) console.log(`npm start: port 8080 is in use; using ${p}`);
      return p;
    }
  }
  const p = await freePort(0);
  console.log(`npm start: ports 8080-8099 are in use; using ${p}`);
  return p;
}

let watcher; // the --watch build, in its own process group (node and the esbuild service it starts)
let cs; // the running code-server
let stopping;
function stop(why) {
  stopping ??= (async () => {
    console.log(`\nnpm start: stopping (${why})`);
    if (watcher) {
      try {
        process.kill(-watcher.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
    try {
      await cs?.stop();
      if (watcher && !(await groupGone(watcher.pid, 5000))) process.kill(-watcher.pid, 'SIGKILL');
    } catch {
      /* the group went away between the check and the kill: nothing is left to stop */
    }
    process.exit(0);
  })();
  return stopping;
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => stop(signal));
const parent = process.ppid;
setInterval(() => process.ppid !== parent && stop('the process that started it exited'), 250).unref();
// Whatever ends this process, the watcher's group goes with it (code-server's lib does the same for its own).
process.on('exit', () => {
  try {
    if (watcher) process.kill(-watcher.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
});

if (!ensureNpmPackages('npm start')) process.exit(1);
if (!run(process.execPath, ['scripts/build.mjs'])) process.exit(1);
if (process.argv.includes('--watch')) {
  watcher = spawn(process.execPath, ['scripts/build.mjs', '--watch'], { cwd: root, stdio: 'inherit', detached: true });
}

const code = spawnSync('sh', ['-c', 'command -v code'], { encoding: 'utf8' }).stdout.trim();
if (code && !process.env.IOMMU_LAB_USE_CODE_SERVER) {
  console.log(`Opening ${examples} in VS Code (${code}) with the extension in development mode.`);
  const r = spawnSync(code, ['--new-window', `--extensionDevelopmentPath=${root}`, examples], { stdio: 'inherit' });
  if (!watcher) process.exit(r.status ?? 1);
  console.log('The --watch build goes on rebuilding; press Ctrl+C to stop it.');
} else {
  if (!run('bash', ['scripts/install-code-server.sh'])) process.exit(1);
  const port = await choosePort();
  // A signal during start-up exits at once; code-server's lib then kills the group it was starting.
  cs = await startCodeServer({ port, dir: join(root, '.vscode-test/code-server') });
  const url = cs.workbenchUrl({ folder: examples, payload: [['extensionDevelopmentPath', cs.remoteUri(root)]] });
  console.log(`
IOMMU Lab is running in code-server (VS Code 1.100.3), bound to 127.0.0.1 only.
Open this URL in a browser on this machine (or through an SSH tunnel: ssh -L ${port}:127.0.0.1:${port} ...):

  ${url}

The IOMMU view is in the activity bar; the examples are .iommu files. Press Ctrl+C to stop.
`);
}
