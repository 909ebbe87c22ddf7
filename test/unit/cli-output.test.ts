import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeLogText } from '../../src/readers/log-decoder';

/**
 * The CLI's output under pressure, as real processes: a reader slower than the command (`| less`), a reader
 * that goes away (`| head -1`), and an output that cannot be written. The large input is generated from the
 * log fixtures at test time, in a temporary directory.
 *
 * Linux only: needs /proc (a process's state and peak memory, /proc/PID/stat and status), /dev/full (a
 * full disk) and bash (`set -o pipefail`).
 */

const root = join(__dirname, '../../..');
const cli = join(root, 'dist/cli.js');
const logs = join(root, 'test/fixtures/logs');

/**
 * Every kernel-log fixture once: events of each vendor and kernel era, and lines that are not IOMMU messages.
 * (Not the QEMU and ftrace fixtures: the decoder picks its line markers from the start of the input, so a
 * kernel log with trace text after it is not decoded as each part alone would be.)
 */
function fixtureBlock(): string {
  return readdirSync(logs)
    .filter((f) => f.endsWith('.log'))
    .sort()
    .map((f) => {
      const text = readFileSync(join(logs, f), 'utf8');
      return text.endsWith('\n') ? text : text + '\n';
    })
    .join('');
}

/** The scheduler state of a process (R running, S sleeping, ...), from /proc/PID/stat; undefined once it is gone. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0];
  } catch {
    return undefined;
  }
}

/** The peak resident set of a process in KiB (VmHWM), or undefined once it is gone. */
function peakRss(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves once `condition` holds, checking it again each time the event loop comes back to the timers. */
function until(condition: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = () => (condition() ? resolve() : setTimeout(check, 1));
    check();
  });
}

describe('cli: output under pressure', function () {
  let dir: string;
  let big: string;
  let copies: number;
  let blockLines: number;
  let blockEvents: number;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'iommu-lab-output-'));
    big = join(dir, 'big.log');
    const block = fixtureBlock();
    blockLines = block.split('\n').length - 1;
    blockEvents = decodeLogText(block).events.length;
    // The copies are independent: two decode to twice the events of one.
    assert.equal(decodeLogText(block + block).events.length, 2 * blockEvents);
    // About 24 MB of log, about 50 MB of JSON out: many times the child's heap below.
    copies = Math.ceil((24 << 20) / Buffer.byteLength(block));
    const fd = openSync(big, 'w');
    const chunk = Buffer.from(block.repeat(64));
    for (let i = 0; i < copies; i += 64) writeSync(fd, i + 64 <= copies ? chunk : Buffer.from(block.repeat(copies - i)));
    closeSync(fd);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('decode-log waits for a slow reader instead of buffering: every line arrives, with a 16 MB heap for 50 MB of output', async () => {
    // With a heap this small, holding back more than a few MB of output kills the child (V8 out of memory).
    const child = spawn(process.execPath, ['--max-old-space-size=16', cli, 'decode-log', '--format', 'json', big], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let gone = false;
    void exited.then(() => (gone = true));

    let lines = 0;
    let tail = '';
    let sincePause = 0;
    let stalls = 0;
    let peak = 0;
    // The reader: after each 256 KiB it stops reading, and reads on only once the child has filled the pipe and
    // gone to sleep waiting for it (or has exited). A child that ignores backpressure never sleeps: it keeps
    // queueing output until its heap is exhausted.
    child.stdout.on('data', (chunk: Buffer) => {
      for (let p = chunk.indexOf(10); p !== -1; p = chunk.indexOf(10, p + 1)) lines++;
      tail = (tail + chunk.toString('utf8')).slice(-4096);
      sincePause += chunk.length;
      if (sincePause < 256 << 10) return;
      sincePause = 0;
      child.stdout.pause();
      void until(() => gone || processState(child.pid!) === 'S').then(() => {
        if (!gone) {
          stalls++;
          peak = Math.max(peak, peakRss(child.pid!) ?? 0);
        }
        child.stdout.resume();
      });
    });
    const ended = new Promise<void>((resolve) => child.stdout.on('end', resolve));
    const code = await exited;
    await ended;

    assert.equal(stderr, '');
    assert.equal(code, 0);
    // One JSON line per event, then the summary; the summary counts every line of the input.
    const summary = JSON.parse(tail.trimEnd().split('\n').at(-1)!).summary;
    assert.equal(summary.lines, copies * blockLines);
    assert.equal(summary.events, copies * blockEvents);
    assert.equal(lines, copies * blockEvents + 1);
    // The reader did hold the child back, many times.
    assert.ok(stalls > 20, `the child waited for the reader ${stalls} times (peak RSS ${peak} KiB)`);
  });

  it('decode-log ends quietly with status 0 when its reader goes away after the first line (| head -1)', async () => {
    const child = spawn(process.execPath, [cli, 'decode-log', '--format', 'json', big], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let first = '';
    await new Promise<void>((resolve) => {
      const onData = (chunk: Buffer) => {
        first += chunk.toString('utf8');
        if (!first.includes('\n')) return;
        child.stdout.off('data', onData);
        // What head does: it has its line and closes the pipe, long before the child is done.
        child.stdout.destroy();
        resolve();
      };
      child.stdout.on('data', onData);
    });
    assert.equal(JSON.parse(first.split('\n')[0]!).line > 0, true);
    assert.equal(await exited, 0);
    assert.equal(stderr, '');
  });

  it('decode-log and lspci through a real `| head -1` in the shell: the first line, status 0 with pipefail, nothing on stderr', () => {
    const lspci = join(dir, 'lspci.txt');
    const fd = openSync(lspci, 'w');
    writeSync(fd, readFileSync(join(logs, 'lspci-vvv.txt'), 'utf8').repeat(2000));
    closeSync(fd);
    for (const [args, first] of [
      [['decode-log', big], /^line \d+: /],
      [['lspci', lspci], /^0000:00:02\.0 VGA compatible controller/],
    ] as const) {
      const quoted = [process.execPath, cli, ...args].map((a) => `'${a}'`).join(' ');
      const r = spawnSync('bash', ['-c', `set -o pipefail; ${quoted} | head -1`], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.stderr, '', args[0]);
      assert.equal(r.status, 0, args[0]);
      assert.equal(r.stdout.split('\n').length, 2, args[0]);
      assert.match(r.stdout, first, args[0]);
    }
  });

  it('an output that cannot be written (a full disk: /dev/full) is one line on stderr and status 1', () => {
    const out = openSync('/dev/full', 'w');
    try {
      const r = spawnSync(process.execPath, [cli, 'decode-log', join(logs, 'vtd-6x.log')], { stdio: ['ignore', out, 'pipe'], encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.stderr, 'iommu-lab: decode-log: cannot write the output: no space left on device\n');
      assert.equal(r.status, 1);
    } finally {
      closeSync(out);
    }
  });
});
