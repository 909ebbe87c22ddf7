// `npm start`: install what is missing, build, and open examples/ in a real VS Code with the extension loaded.
// With VS Code's `code` CLI on PATH it opens a desktop window in development mode; otherwise it serves the
// project's pinned code-server on 127.0.0.1 and prints the URL to open in a browser.
// Options: --port N (code-server port, default 8080 or the next free one), --watch (rebuild on change).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const examples = join(root, 'examples');
const run = (cmd, args) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit' }).status === 0;
const portAt = process.argv.indexOf('--port');

if (!existsSync(join(root, 'node_modules/.package-lock.json')) && !run('npm', ['ci', '--no-audit', '--no-fund'])) process.exit(1);
if (!run(process.execPath, ['scripts/build.mjs'])) process.exit(1);
if (process.argv.includes('--watch')) spawn(process.execPath, ['scripts/build.mjs', '--watch'], { cwd: root, stdio: 'inherit' });

const code = spawnSync('sh', ['-c', 'command -v code'], { encoding: 'utf8' }).stdout.trim();
if (code && !process.env.IOMMU_LAB_USE_CODE_SERVER) {
  console.log(`Opening ${examples} in VS Code (${code}) with the extension in development mode.`);
  const r = spawnSync(code, ['--new-window', `--extensionDevelopmentPath=${root}`, examples], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

if (!run('bash', ['scripts/install-code-server.sh'])) process.exit(1);
const { freePort, startCodeServer } = await import('./lib/code-server.mjs');
const port = await freePort(portAt > 0 ? Number(process.argv[portAt + 1]) : 8080);
const cs = await startCodeServer({ port, dir: join(root, '.vscode-test/code-server') });
const url = cs.workbenchUrl({ folder: examples, payload: [['extensionDevelopmentPath', cs.remoteUri(root)]] });
console.log(`
IOMMU Lab is running in code-server (VS Code 1.100.3), bound to 127.0.0.1 only.
Open this URL in a browser on this machine (or through an SSH tunnel: ssh -L ${port}:127.0.0.1:${port} ...):

  ${url}

The IOMMU view is in the activity bar; the examples are .iommu files. Press Ctrl+C to stop.
`);
const stop = async () => {
  await cs.stop();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
