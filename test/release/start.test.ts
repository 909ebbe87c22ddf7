// `npm start` as a user runs it, stopped as a user stops it: SIGTERM to the npm process (what a process
// manager or `kill` sends) and SIGINT to the whole process group (what a terminal's Ctrl-C sends). Either
// way every process it started must go (npm's shell, the start script, the --watch build and esbuild's
// service, code-server and every process of its group) and the port must be free for the next start.
// Linux only: needs /proc (the processes of a group, with their parents and start times, /proc/PID/stat).
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { codeServerLib, root, until } from './harness';

interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
  /** Clock ticks after boot when it started (field 22 of /proc/PID/stat): tells a reused pid apart. */
  started: string;
  zombie: boolean;
  cmd: string;
}

function readProc(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    return { pid, ppid: Number(f[1]), pgid: Number(f[2]), started: f[19]!, zombie: f[0] === 'Z', cmd };
  } catch {
    return undefined; // gone while we looked
  }
}

function allProcesses(): Proc[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).flatMap((n) => readProc(Number(n)) ?? []);
}

/** `top` and its descendants, and every member of their process groups (code-server and the watcher have their own). */
function processTree(top: number): Proc[] {
  const all = allProcesses();
  const ours = readProc(process.pid)!.pgid; // never this test's own group
  const found = new Map<number, Proc>();
  const add = (p: Proc) => {
    if (found.has(p.pid)) return;
    found.set(p.pid, p);
    for (const c of all) if (c.ppid === p.pid || (c.pgid === p.pgid && p.pgid !== ours)) add(c);
  };
  const first = all.find((p) => p.pid === top);
  if (first) add(first);
  return [...found.values()];
}

/** Still there, as the same process, and not a zombie (a zombie holds no port and runs no code). */
function running(p: Proc): boolean {
  const now = readProc(p.pid);
  return !!now && now.started === p.started && !now.zombie;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

interface Started {
  npm: ChildProcess;
  /** What was running when the stop began, for the clean-up after a failure. */
  tree?: Proc[];
  url: string;
  output(): string;
  exited(): boolean;
}

/** Runs `npm start -- --port PORT ...` in its own process group, as a terminal runs a foreground job. */
async function npmStart(port: number, extra: string[]): Promise<Started> {
  const env = { ...process.env, IOMMU_LAB_USE_CODE_SERVER: '1' }; // never a desktop `code` window
  const npm = spawn('npm', ['start', '--', '--port', String(port), ...extra], { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let exited = false;
  npm.stdout!.on('data', (b) => (out += b));
  npm.stderr!.on('data', (b) => (out += b));
  npm.once('exit', () => (exited = true));
  const url = await until(
    'npm start to print its URL',
    () => {
      if (exited) throw new Error(`npm start exited before printing a URL:\n${out}`);
      return /^ {2}(http:\/\/127\.0\.0\.1:\d+\/\?\S+)$/m.exec(out)?.[1];
    },
    150_000,
  );
  return { npm, url, output: () => out, exited: () => exited };
}

/** Sends `signal` and waits, by condition, until npm, every process of the tree and the port are gone. */
async function stopAndCheck(s: Started, port: number, send: () => void): Promise<void> {
  const tree = processTree(s.npm.pid!);
  s.tree = tree;
  const cmds = tree.map((p) => p.cmd).join('\n');
  assert.match(cmds, /scripts\/start\.mjs/, 'the start script runs');
  assert.match(cmds, /code-server/, 'code-server runs');
  send();
  await until('npm to exit', () => s.exited(), 30_000);
  const groups = new Set(tree.map((p) => p.pgid));
  try {
    await until('every process npm start started to end', () => !tree.some(running) && !allProcesses().some((p) => groups.has(p.pgid) && !p.zombie), 30_000);
  } catch (e) {
    const left = tree.filter(running).map((p) => `${p.pid} ${p.cmd}`);
    throw new Error(`${(e as Error).message}; still running:\n${left.join('\n')}\noutput:\n${s.output()}`);
  }
  await until(`port ${port} to be free`, () => portFree(port), 10_000);
}

describe('npm start stops everything it started', function () {
  this.timeout(300_000);
  let port: number;
  let current: Started | undefined;

  before(async () => {
    port = await (await codeServerLib()).freePort();
  });

  afterEach(() => {
    // Only after a failure is anything left; end it so that it cannot hold the port for the next test.
    for (const p of current ? [...(current.tree ?? []), ...processTree(current.npm.pid!)] : []) {
      if (!running(p)) continue;
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    current = undefined;
  });

  it('with --watch, on SIGTERM to the npm process: code-server, its children and the watch build end, the port is freed', async () => {
    current = await npmStart(port, ['--watch']);
    assert.equal(new URL(current.url).port, String(port));
    assert.equal((await fetch(new URL('/healthz', current.url))).status, 200);
    assert.match(processTree(current.npm.pid!).map((p) => p.cmd).join('\n'), /build\.mjs --watch/);
    const npm = current.npm;
    await stopAndCheck(current, port, () => npm.kill('SIGTERM'));
  });

  it('starts again on the same port right after, and stops on Ctrl-C (SIGINT to the process group)', async () => {
    current = await npmStart(port, []);
    assert.equal(new URL(current.url).port, String(port), 'the second start got the port the first one freed');
    const res = await fetch(current.url);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /<html/i);
    const pgid = current.npm.pid!;
    await stopAndCheck(current, port, () => process.kill(-pgid, 'SIGINT'));
  });
});
