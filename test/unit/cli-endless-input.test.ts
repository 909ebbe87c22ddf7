import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDebugfsInputs } from '../../src/cli/debugfs-files';
import { InputError } from '../../src/cli/framework';
import { DUMP_LIMIT, KERNEL_LOG_LIMIT, readTextFile, sizeText, TOPOLOGY_LIMIT } from '../../src/cli/input';
import { DebugfsParser } from '../../src/readers/debugfs';

/**
 * Inputs that never end: /dev/zero, and a FIFO whose writer (a child process this test controls) writes until
 * the reader goes away. The commands that hold an input whole (check, import-debugfs, walk) must decide "not
 * text" from the first 64 KiB and stop at a size limit, with one line and status 1, instead of reading until
 * the memory runs out. The writer ends by itself on EPIPE once the CLI has exited; `after` kills what is left.
 */

const root = join(__dirname, '../../..');
const cli = join(root, 'dist/cli.js');

function run(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Writes `unit` (JSON: a NUL cannot be an argument) to `path` (a FIFO, or '-' for stdout) until the reader goes away. */
const WRITER = `
const fs = require('fs');
const path = process.argv[1];
const unit = JSON.parse(process.argv[2]);
const fd = path === '-' ? 1 : fs.openSync(path, 'w');
const block = Buffer.from(unit.repeat(Math.ceil(65536 / unit.length)));
for (;;) {
  try { fs.writeSync(fd, block); } catch { process.exit(0); }
}`;

/** One line on stderr, status 1, nothing on stdout. */
function oneLine(r: { code: number | null; stdout: string; stderr: string }, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.split('\n').length, 2, r.stderr);
  assert.match(r.stderr, pattern);
}

const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('cli: inputs that never end', () => {
  let dir: string;
  const writers: ChildProcess[] = [];
  let fifos = 0;

  /** A new FIFO with a writer of endless `unit`; the writer blocks until a reader opens it. */
  function endless(unit: string): string {
    const fifo = join(dir, `fifo${fifos++}`);
    const made = spawnSync('mkfifo', [fifo]);
    assert.equal(made.status, 0, `mkfifo (coreutils) is needed: ${made.error?.message ?? made.stderr}`);
    writers.push(spawn(process.execPath, ['-e', WRITER, fifo, JSON.stringify(unit)], { stdio: 'ignore' }));
    return fifo;
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'iommu-lab-endless-'));
  });
  after(() => {
    for (const w of writers) if (w.exitCode === null) w.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  const commands = {
    check: (input: string) => ['check', input],
    'import-debugfs': (input: string) => ['import-debugfs', input],
    walk: (input: string) => ['walk', '--debugfs', input, '--device', '00:01.0', '0x1000'],
  };

  for (const [name, args] of Object.entries(commands)) {
    it(`${name}: /dev/zero and a FIFO of NULs are "not a text file" after the first 64 KiB`, () => {
      oneLine(run(args('/dev/zero')), new RegExp(`^iommu-lab: ${name}: /dev/zero: not a text file \\(65536 of its first 65536 bytes are control characters, the first at offset 0\\)\\n$`));
      const fifo = endless('\0');
      oneLine(run(args(fifo)), new RegExp(`^iommu-lab: ${name}: ${escaped(fifo)}: not a text file \\(\\d+ of its first \\d+ bytes are control characters, the first at offset 0\\)\\n$`));
    });
  }

  it('check: endless text is refused past 64 MiB, from a FIFO and from stdin', () => {
    assert.equal(sizeText(TOPOLOGY_LIMIT.bytes), '64 MiB');
    const fifo = endless('device 00:02.0\n');
    oneLine(run(['check', fifo]), new RegExp(`^iommu-lab: check: ${escaped(fifo)}: larger than 64 MiB: more than any topology file holds \\(is it the right file\\?\\)\\n$`));
    // stdin from a writer that never stops: the shell pipes the writer into the CLI.
    const writer = `${process.execPath} -e "$WRITER" - '"device 00:02.0\\n"'`;
    const r = spawnSync('sh', ['-c', `${writer} | ${process.execPath} ${cli} check -`], { encoding: 'utf8', env: { ...process.env, WRITER }, timeout: 60_000 });
    oneLine({ code: r.status, stdout: r.stdout, stderr: r.stderr }, /^iommu-lab: check: <stdin>: larger than 64 MiB: /);
  });

  for (const name of ['import-debugfs', 'walk'] as const) {
    it(`${name}: endless text that starts no debugfs table stops after the first lines, from a FIFO and from stdin`, () => {
      const fifo = endless('not a debugfs line\n');
      oneLine(
        run(commands[name](fifo)),
        new RegExp(`^iommu-lab: ${name}: ${escaped(fifo)}: no VT-d debugfs tables found in its first \\d+ lines, so it was not read further \\(the first, line 1: not part of a VT-d debugfs table: 'not a debugfs line'\\)\\n$`),
      );
      const writer = `${process.execPath} -e "$WRITER" - '"not a debugfs line\\n"'`;
      const stdin = name === 'walk' ? 'walk --debugfs - --device 00:01.0 0x0' : 'import-debugfs -';
      const r = spawnSync('sh', ['-c', `${writer} | ${process.execPath} ${cli} ${stdin}`], { encoding: 'utf8', env: { ...process.env, WRITER }, timeout: 60_000 });
      oneLine({ code: r.status, stdout: r.stdout, stderr: r.stderr }, new RegExp(`^iommu-lab: ${name}: <stdin>: no VT-d debugfs tables found in its first \\d+ lines`));
    });
  }

  it('a dump of endless page-table rows is refused past the dump limit, naming the file (in-process, with a 1 MiB limit)', async () => {
    assert.equal(sizeText(DUMP_LIMIT.bytes), '256 MiB');
    // A domain_translation_struct title (6.7+, `Device %04x:%02x:%02x.%x @0x%llx`), then the same row forever.
    const fifo = join(dir, 'rows');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const title = 'Device 0000:00:02.0 @0x10016000\nIOVA_PFN\t\tPML5E\t\t\tPML4E\t\t\tPDPE\t\t\tPDE\t\t\tPTE\n';
    const row = '0x0000000000100 |\t0x0000000000000000\t0x000000001003b027\t0x000000001003c027\t0x000000001003d027\t0x0000000080000003\n';
    const script = `const fs = require('fs'); const fd = fs.openSync(process.argv[1], 'w'); fs.writeSync(fd, process.argv[2]);
      const b = Buffer.from(process.argv[3].repeat(600)); for (;;) { try { fs.writeSync(fd, b); } catch { process.exit(0); } }`;
    writers.push(spawn(process.execPath, ['-e', script, fifo, title, row], { stdio: 'ignore' }));
    const limit = { bytes: 1024 * 1024, why: DUMP_LIMIT.why };
    await assert.rejects(parseDebugfsInputs(new DebugfsParser(), [fifo], {}, limit), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.equal(e.input, fifo);
      assert.equal(e.message, 'larger than 1 MiB: more than any debugfs dump holds (is it the right file?)');
      return true;
    });
  });

  it('a whole-file read (the --dmesg log) stops at its limit too, and names the file', async () => {
    assert.equal(sizeText(KERNEL_LOG_LIMIT.bytes), '256 MiB');
    const fifo = endless('[    0.000000] Linux version 6.12.0\n');
    await assert.rejects(readTextFile(fifo, { bytes: 3 * 1024 * 1024, why: KERNEL_LOG_LIMIT.why }), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.equal(`${e.input}: ${e.message}`, `${fifo}: larger than 3 MiB: more than the kernel log of one boot holds (cut out the boot the dump is from)`);
      return true;
    });
  });
});
