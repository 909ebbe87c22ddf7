import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeLogText } from '../../src/readers/log-decoder';
import { explainEvent } from '../../src/readers/log-explain';
import { createLspciReader } from '../../src/readers/lspci';

const root = join(__dirname, '../../..');
const cli = join(root, 'dist/cli.js');
const logs = join(root, 'test/fixtures/logs');
const logFixtures = readdirSync(logs).filter((f) => !f.startsWith('lspci'));

function run(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, timeout: 60_000, maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function jsonLines(stdout: string): unknown[] {
  assert.ok(stdout.endsWith('\n'));
  return stdout.slice(0, -1).split('\n').map((l) => JSON.parse(l) as unknown);
}

/** What the CLI must print for `input`: the decoder fed every line, as JSON would carry it. */
function expected(input: string): unknown[] {
  const { events, summary } = decodeLogText(input);
  return JSON.parse(JSON.stringify([...events, { summary }])) as unknown[];
}

describe('cli: decode-log', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'iommu-lab-decode-log-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints one JSON object per event and a final summary, the same as decoding every line, for every fixture', () => {
    for (const name of logFixtures) {
      const r = run(['decode-log', join(logs, name), '--format', 'json']);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      assert.equal(r.stderr, '');
      const out = jsonLines(r.stdout);
      assert.ok(out.length > 1, name);
      assert.deepEqual(out, expected(readFileSync(join(logs, name), 'utf8')), name);
      for (const e of out.slice(0, -1)) {
        for (const k of ['line', 'vendor', 'kind', 'device', 'pasid', 'address', 'access', 'reason']) assert.ok(k in (e as object), `${name}: no ${k}`);
      }
    }
  });

  it('reads stdin when the file is - or missing', () => {
    const input = readFileSync(join(logs, 'amd-vi.log'), 'utf8');
    const fromFile = run(['decode-log', join(logs, 'amd-vi.log'), '--format', 'json']).stdout;
    assert.equal(run(['decode-log', '-', '--format', 'json'], input).stdout, fromFile);
    assert.equal(run(['decode-log', '--format', 'json'], input).stdout, fromFile);
    // Empty stdin still gets its summary on stdout, and a line on stderr saying what was wrong.
    const empty = run(['decode-log', '--format', 'json'], '');
    assert.deepEqual(jsonLines(empty.stdout), expected(''));
    assert.deepEqual([empty.code, empty.stderr], [1, 'iommu-lab: decode-log: <stdin>: empty (0 bytes)\n']);
  });

  it('explains each event in words by default and ends with the summary in words', () => {
    const input = readFileSync(join(logs, 'vtd-6x.log'), 'utf8');
    const r = run(['decode-log'], input);
    assert.equal(r.code, 0);
    const { events, summary } = decodeLogText(input);
    assert.ok(events.length > 5);
    for (const e of events) assert.ok(r.stdout.includes(explainEvent(e).join('\n') + '\n\n'), `line ${e.line} not explained`);
    assert.match(r.stdout, new RegExp(`\\n${summary.lines} lines: ${summary.events} events, `));
    // The fault-reason catalogue's meaning of 0x06 is in the explanation of the first DMA fault.
    assert.match(r.stdout, /PTE Read access is not set/);
  });

  it('gives the same result when events straddle read buffers, lines end in CRLF, a line is overlong and the last has no newline', () => {
    // Fixture lines mixed with noise of varied lengths, so that events cross every kind of 64 KiB boundary.
    const fixtureLines = ['vtd-6x.log', 'vtd-5x.log', 'vtd-legacy.log', 'vtd-wrapped.log', 'xen-vtd.log', 'amd-vi.log', 'smmu-v3.log']
      .flatMap((f) => readFileSync(join(logs, f), 'utf8').split('\n').filter(Boolean));
    const lines: string[] = [];
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    for (let round = 0; round < 12; round++) {
      for (const l of fixtureLines) {
        lines.push(l);
        if (rand(4) === 0) lines.push(`[ ${round}.${lines.length}] usb 1-1: noise ${'n'.repeat(rand(300))}`);
      }
    }
    lines.splice(500, 0, `[ 9.0] DMAR: ${'x'.repeat(100_000)}`, '[ 9.1] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x1000 [fault reason 0x06] PTE Read access is not set');
    const lf = lines.join('\n');
    const cases: [string, string][] = [
      ['lf.log', lf + '\n'],
      ['crlf.log', lines.join('\r\n') + '\r\n'],
      ['no-final-newline.log', lf],
    ];
    for (const [name, content] of cases) {
      assert.ok(content.length > 4 * 65536);
      const file = join(dir, name);
      writeFileSync(file, content);
      const out = jsonLines(run(['decode-log', file, '--format', 'json']).stdout);
      const want = expected(content);
      assert.equal(out.length, want.length, name);
      assert.deepEqual(out, want, name);
    }
  });

  it('reports a file it cannot read as a problem with the input (1) and a bad format as bad usage (2), one line each', () => {
    const missing = join(dir, 'missing.log');
    assert.deepEqual(run(['decode-log', missing]), { code: 1, stdout: '', stderr: `iommu-lab: decode-log: ${missing}: no such file or directory\n` });
    const bad = run(['decode-log', '--format', 'xml', join(logs, 'amd-vi.log')]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, "iommu-lab: decode-log: --format must be text or json, not 'xml' (see 'iommu-lab decode-log --help')\n");
    assert.deepEqual(run(['decode-log', dir]), { code: 1, stdout: '', stderr: `iommu-lab: decode-log: ${dir}: is a directory\n` });
  });

  it('is listed by --help, and decode-log --help points at the format list', () => {
    const help = run(['--help']).stdout;
    assert.match(help, /\n {2}decode-log {2,}\S/);
    assert.match(help, /\n {2}lspci {2,}\S/);
    assert.match(run(['decode-log', '--help']).stdout, /docs\/log-formats\.md/);
  });
});

describe('cli: lspci', () => {
  const input = readFileSync(join(logs, 'lspci-vvv.txt'), 'utf8');
  const reference = () => {
    const reader = createLspciReader();
    const lines = input.split('\n');
    if (lines.at(-1) === '') lines.pop();
    const devices = lines.flatMap((l, i) => reader.push(l, i + 1));
    devices.push(...reader.end(lines.length));
    return { devices, summary: reader.summary() };
  };

  it('prints every device as JSON, then the summary, from a file or stdin', () => {
    const { devices, summary } = reference();
    const want = JSON.parse(JSON.stringify([...devices, { summary }])) as unknown[];
    const fromFile = run(['lspci', join(logs, 'lspci-vvv.txt'), '--format', 'json']);
    assert.equal(fromFile.code, 0);
    assert.deepEqual(jsonLines(fromFile.stdout), want);
    assert.equal(run(['lspci', '-', '--format', 'json'], input).stdout, fromFile.stdout);
    assert.equal(run(['lspci', '--format', 'json'], input).stdout, fromFile.stdout);
  });

  it('describes the devices with ATS, PRI or PASID in words and counts them', () => {
    const { devices, summary } = reference();
    const r = run(['lspci', join(logs, 'lspci-vvv.txt')]);
    assert.equal(r.code, 0);
    for (const d of devices) assert.equal(r.stdout.includes(d.device), Boolean(d.ats || d.pri || d.pasid || d.accessDenied), d.device);
    assert.ok(r.stdout.endsWith(`${summary.devices} devices: ${summary.withAts} with ATS, ${summary.withPri} with PRI, ${summary.withPasid} with PASID` + (summary.accessDenied > 0 ? `; ${summary.accessDenied} whose extended capabilities were not readable (run lspci as root)` : '') + `; ${summary.withNone} with none of these (not listed).\n`));
  });

  it('counts what it lists: of the six devices of the fixture five are described and the audio device, with none of the capabilities, is left out and counted', () => {
    const r = run(['lspci', join(logs, 'lspci-vvv.txt')]);
    assert.equal(r.code, 0);
    // The fixture's device headers, by line: 00:02.0, 6a:01.0, 3b:00.0 and 01:00.0 (access denied) and 10000:e1:00.0 have
    // one of ATS, PRI, PASID or unreadable capabilities; 00:1f.3 (audio) has none of them.
    const described = r.stdout.split('\n\n').slice(0, -1).map((block) => block.split(' ')[0]);
    assert.deepEqual(described, ['0000:00:02.0', '0000:6a:01.0', '0000:3b:00.0', '0000:01:00.0', '10000:e1:00.0']);
    assert.equal(r.stdout.split('\n\n').at(-1), '6 devices: 3 with ATS, 2 with PRI, 3 with PASID; 1 whose extended capabilities were not readable (run lspci as root); 1 with none of these (not listed).\n');
  });

  it('reports a missing file as a problem with the input, exit code 1', () => {
    const missing = join(root, 'no-such-file.txt');
    assert.deepEqual(run(['lspci', missing]), { code: 1, stdout: '', stderr: `iommu-lab: lspci: ${missing}: no such file or directory\n` });
  });
});
