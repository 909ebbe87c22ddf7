import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commands } from '../../src/cli/commands';
import { type CliIo, runCli } from '../../src/cli/framework';
import { decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { linesOf, pastes, plainLogs, TRANSPORTS } from '../support/log-pastes';

// decode-log reads through a 64 KiB buffer and hands the decoder only the lines with a marker (and those
// it asks for): the result must be the decoder's on every line (decodeLogText), whatever the buffer
// boundaries, the line ends and the formats of the parts of the input. The command runs in-process here
// (hundreds of inputs); cli-decode-log.test.ts runs it as a process.

/** decode-log --format json on `text`, in-process: the printed objects, the exit status and stderr. */
async function decodeLog(dir: string, text: string | Buffer): Promise<{ code: number; printed: unknown[]; stderr: string }> {
  const file = join(dir, 'input.log');
  writeFileSync(file, text);
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (t) => void out.push(t), err: (t) => void err.push(t) };
  const code = await runCli(['decode-log', '--format', 'json', file], commands, '0', io);
  const stdout = out.join('');
  assert.ok(stdout.endsWith('\n'), stdout);
  return { code, printed: stdout.slice(0, -1).split('\n').map((l) => JSON.parse(l) as unknown), stderr: err.join('') };
}

/** What decode-log must print: the decoder fed every line, as JSON carries it. */
function everyLine(text: string): unknown[] {
  const { events, summary } = decodeLogText(text);
  return JSON.parse(JSON.stringify([...events, { summary }])) as unknown[];
}

const eventsOf = (printed: unknown[]) => printed.slice(0, -1) as LogEvent[];
const summaryOf = (printed: unknown[]) => (printed.at(-1) as { summary: { lines: number; events: number } }).summary;

/** An ordinary kernel log of at least `bytes`, none of whose lines has anything to do with an IOMMU. */
function noise(bytes: number, from = 0): string[] {
  const out: string[] = [];
  let size = 0;
  for (let i = from; size < bytes; i++) {
    const l = `[ ${(i / 1000).toFixed(6)}] usb 1-${i % 7}: new high-speed USB device number ${i % 128} using xhci_hcd`;
    out.push(l);
    size += l.length + 1;
  }
  return out;
}

describe('cli: decode-log reads what the decoder reads on every line', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'iommu-lab-decode-streams-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('for every plain log and every paste, the events (fields and line numbers) and the summary', async () => {
    for (const { name, text } of [...plainLogs(), ...pastes()]) {
      const r = await decodeLog(dir, text);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      assert.deepEqual(r.printed, everyLine(text), name);
    }
  });

  // Wrapped, quoted and re-encoded copies: the decoder keeps a line with a marker of the input's format
  // (a Xen tag, a QEMU or trace event) waiting for its wrapped tail, so decode-log must tell it those
  // markers; a quoted-printable soft break may cut a marker in two. A lone CR between the lines makes one
  // line of the whole log: the next test has it.
  for (const tr of TRANSPORTS.filter((t) => t.name !== 'lone CR between lines')) {
    it(`for every plain log through ${tr.name}`, async () => {
      for (const { name, text } of plainLogs()) {
        const pasted = tr.apply(linesOf(text));
        assert.deepEqual((await decodeLog(dir, pasted)).printed, everyLine(pasted), name);
      }
    });
  }

  it('finds every event of a log whose lines end in a lone CR, also past the 64 KiB buffer, all on line 1 (as grep -n counts)', async () => {
    const faults: string[] = [];
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) {
      lines.push(`[ ${i}.000000] usb 1-1: new high-speed USB device number ${i % 128} using xhci_hcd`);
      if (i % 10 === 0) {
        const addr = `0x${(0x10000000 + i * 0x1000).toString(16)}`;
        faults.push(addr);
        lines.push(`[ ${i}.500000] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr ${addr} [fault reason 0x06] PTE Read access is not set`);
      }
    }
    for (const [what, text] of [
      ['ending in a CR', lines.join('\r') + '\r'],
      ['without a final line break', lines.join('\r')],
      ['ending in a LF', lines.join('\r') + '\n'],
    ] as const) {
      assert.ok(text.length > 4 * 65536);
      const r = await decodeLog(dir, text);
      assert.equal(r.code, 0, r.stderr);
      const events = eventsOf(r.printed);
      assert.deepEqual(events.map((e) => e.address), faults, what);
      assert.deepEqual(events.map((e) => [e.line, e.endLine, e.kind, e.device, e.reason?.code]), faults.map(() => [1, 1, 'dma-fault', '0000:00:02.0', 6]), what);
      assert.equal(summaryOf(r.printed).lines, 1, what);
    }
  });

  it('reads the parts of a line cut at CRs as one line: a walk dump and a two-line fault across the cut', async () => {
    // Every line ends in a lone CR; the events lie across every offset of the buffer's end.
    const dump = [
      'DMAR: [DMA Read PASID 0x2] Request device [6a:01.0] fault addr 0x7f0012345000 [fault reason 0x71] SM: Present bit in first-level paging entry is clear',
      'DMAR: Dump dmar3 table entries for IOVA 0x7f0012345000',
      'DMAR: scalable mode root entry: hi 0x0000000000000000, low 0x00000001049a0001',
      'DMAR: context entry: hi 0x0000000000000000, low 0x000000010ab3c20f',
      'DMAR: pasid dir entry: 0x000000010ab3d001',
      'DMAR: pasid table entry[0]: 0x0000000000000049',
      'DMAR: pte level: 4, pte value: 0x0000000012345067',
      'DMAR: page table not present at level 2',
    ];
    // The two-line form of Linux before 4.x (test/fixtures/logs/vtd-legacy.log).
    const legacy = ['[    3.200000] DMAR:[DMA Write] Request device [06:00.0] fault addr fffdf000 ', 'DMAR:[fault reason 02] Present bit in context entry is clear'];
    const lines = noise(60_000);
    const base = lines.join('\r').length;
    for (let i = 0; i < 40; i++) lines.push(...(i % 2 ? legacy : dump), `pad ${'x'.repeat(i * 37)}`);
    lines.push(...noise(100_000, 1));
    const text = lines.join('\r') + '\n';
    assert.ok(base < 65536 && text.length > 3 * 65536);
    const events = eventsOf((await decodeLog(dir, text)).printed);
    // The same events as the lines give with LF ends, all on line 1.
    const lf = decodeLogText(lines.join('\n') + '\n').events;
    assert.equal(lf.length, 40);
    assert.deepEqual(events, lf.map((e) => ({ ...e, line: 1, endLine: 1 })));
    assert.ok(lf.filter((e) => e.format === 'vtd-dma-5.15').every((e) => e.details.walk !== undefined));
  });

  it('reads a marker cut in two by a quoted-printable soft break past the first 64 KiB (a mail pasted after a plain log)', async () => {
    // The start has no soft break; the `=` that ends `DM=` joins the next line (RFC 2045 6.7, rule 5): the
    // line that alloc_iommu() (drivers/iommu/intel/dmar.c) prints for each unit, "%s: reg_base_addr %llx
    // ver %d:%d cap %llx ecap %llx", after the pr_fmt "DMAR: ".
    const cut = ['DM=', 'AR: dmar0: reg_base_addr fed90000 ver 1:0 cap 1c0000c40660462 ecap 19e2ff0505e'];
    const lines = [...noise(70_000), ...cut, ...noise(1000, 1)];
    for (const [what, text] of [
      ['LF', lines.join('\n') + '\n'],
      ['CR LF', lines.join('\r\n') + '\r\n'],
      ['lone CR', lines.join('\r') + '\r'],
    ] as const) {
      assert.ok(text.indexOf('DM=') > 65536, what);
      const want = everyLine(text);
      const events = eventsOf(want);
      assert.equal(events.length, 1, what);
      assert.deepEqual([events[0]!.kind, events[0]!.iommu, events[0]!.details.registerBase], ['capability', 'dmar0', '0xfed90000'], what);
      assert.deepEqual((await decodeLog(dir, text)).printed, want, what);
    }
  });

  it('reads a kernel log followed by ftrace, QEMU trace and Xen console text (cat kern.log trace qemu.trace xen.log)', async () => {
    // The start (64 KiB and more) is an ordinary kernel log: the later formats' events are found all the same.
    const logs = new Map(plainLogs().map((l) => [l.name, l.text]));
    const parts = ['vtd-6x.log', 'intel-iommu.ftrace', 'qemu-vtd.trace', 'xen-amd-vi.log', 'xen-vtd.log', 'amd-vi.log'];
    const text = noise(100_000).join('\n') + '\n' + parts.map((p) => logs.get(p)!).join('');
    const r = await decodeLog(dir, text);
    assert.deepEqual(r.printed, everyLine(text));
    // Each part's events are those of the part decoded alone.
    const alone = parts.reduce((n, p) => n + decodeLogText(logs.get(p)!).events.length, 0);
    assert.equal(summaryOf(r.printed).events, alone);
    assert.ok(eventsOf(r.printed).some((e) => e.format === 'qemu-trace') && eventsOf(r.printed).some((e) => e.format.startsWith('ftrace-')));
  });
});
