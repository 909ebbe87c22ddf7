import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hexWord, normalizeHex } from '../../src/readers/hex';
import { createLogDecoder, decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { describeSummary } from '../../src/readers/log-explain';
import { LOG_FORMATS } from '../../src/readers/log-formats';
import { LOG_MARKERS, QEMU_MARKERS, SEARCH_KEYS, TRACE_MARKERS, markersFor } from '../../src/readers/log-markers';
import { stripPrefixes } from '../../src/readers/log-prefix';

const root = join(__dirname, '../../..');
const logs = join(root, 'test/fixtures/logs');
const fixtures = readdirSync(logs).filter((f) => !f.startsWith('lspci'));
const text = (name: string) => readFileSync(join(logs, name), 'utf8');

/**
 * Decodes the way a caller that skips lines must (what the CLI does on raw bytes): marker lines (by their
 * search keys) and every line while the decoder asks for it.
 */
function decodeSkipping(input: string): { events: LogEvent[]; fed: number } {
  const lines = input.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const markers = markersFor(input.slice(0, 65536));
  const keys = markers.map((m) => SEARCH_KEYS[m]!);
  const d = createLogDecoder({ markers });
  const events: LogEvent[] = [];
  let fed = 0;
  for (let i = 0; i < lines.length; i++) {
    if (d.wantsNextLine || keys.some((k) => lines[i]!.includes(k))) {
      events.push(...d.push(lines[i]!, i + 1));
      fed++;
    }
  }
  events.push(...d.end(lines.length));
  return { events, fed };
}

/** `input` with an unrelated line after every `every`-th line: other subsystems print in between. */
function withNoise(input: string, every: number): string {
  return input
    .split('\n')
    .map((l, i) => (i % every === every - 1 ? `${l}\n[ ${i}.5] usb 1-1: noise` : l))
    .join('\n');
}

describe('readers: log prefixes', () => {
  const cases: [string, string, string | null][] = [
    ['[ 1234.567890] DMAR: x', 'DMAR: x', '1234.567890'],
    ['[    9.691017][  T814] DMAR: x', 'DMAR: x', '9.691017'],
    ['Jun 10 04:03:08 host1 kernel: [  103.512345] DMAR: x', 'DMAR: x', '103.512345'],
    ['Oct 14 18:41:49.056490 kernel:[   85.570347] [drm:gen8] x', '[drm:gen8] x', '85.570347'],
    ['2024-06-10T04:03:09.123456+02:00 host1 kernel: AMD-Vi: x', 'AMD-Vi: x', '2024-06-10T04:03:09.123456+02:00'],
    ['<3>[  104.000000] DMAR: x', 'DMAR: x', '104.000000'],
    ['kern  :err   : [  105.000000] DMAR: x', 'DMAR: x', '105.000000'],
    ['kern  :err   : [Mon Jun 10 04:03:11 2024] DMAR: x', 'DMAR: x', 'Mon Jun 10 04:03:11 2024'],
    ['(XEN) [   37.201160] [VT-D]DMAR: x', '[VT-D]DMAR: x', '37.201160'],
    ['(XEN) [2024-01-02 03:04:05.678] [VT-D]DMAR: x', '[VT-D]DMAR: x', '2024-01-02 03:04:05.678'],
    ['> > >   [ 1.5] arm-smmu-v3 a: \t0x01', 'arm-smmu-v3 a: \t0x01', '1.5'],
    ['\x1b[1;31m[ 2.0] DMAR: x\x1b[0m\r', 'DMAR: x', '2.0'],
    ['DMAR: [DMA Read] Request device', 'DMAR: [DMA Read] Request device', null],
    ['Jun 10 04:03:08 host1 DMAR: not an ident', 'DMAR: not an ident', 'Jun 10 04:03:08'],
    ['iommu ivhd0: AMD-Vi: x', 'iommu ivhd0: AMD-Vi: x', null],
    ['fault addr =3D 1', 'fault addr = 1', null],
  ];
  for (const [raw, msg, timestamp] of cases) {
    it(`strips ${JSON.stringify(raw.slice(0, 40))}`, () => {
      const s = stripPrefixes(raw);
      assert.deepEqual([s.msg, s.timestamp], [msg, timestamp]);
    });
  }

  it('tells a line with its own header from a wrapped continuation', () => {
    assert.equal(stripPrefixes('[ 1.0] x').stamped, true);
    assert.equal(stripPrefixes('> fault addr 1').stamped, false);
    assert.equal(stripPrefixes('> fault addr 1').hadPrefix, true);
    assert.equal(stripPrefixes(' reason 0x25]').leadingSpace, true);
  });
});

describe('readers: the log decoder', () => {
  it('streams: an open multi-line event asks for the next line and is emitted when a line does not belong', () => {
    const d = createLogDecoder();
    assert.equal(d.wantsNextLine, false);
    assert.deepEqual(d.push('[ 1.0] arm-smmu-v3 x.auto: event 0x10 received:', 1), []);
    assert.equal(d.wantsNextLine, true);
    for (let i = 0; i < 4; i++) assert.deepEqual(d.push(`[ 1.0] arm-smmu-v3 x.auto: \t0x${(i === 0 ? 0x10 : 0).toString(16).padStart(16, '0')}`, i + 2), []);
    const out = d.push('[ 2.0] usb 1-1: new device', 6);
    assert.deepEqual(out.map((e) => [e.line, e.endLine, e.reason?.text]), [[1, 5, 'F_TRANSLATION']]);
    assert.equal(d.wantsNextLine, false);
    assert.deepEqual(d.end(10), []);
    const s = d.summary();
    assert.deepEqual([s.lines, s.events, s.recognisedLines, s.unrecognisedLines], [10, 1, 5, 5]);
  });

  it('closes an open event when the caller skipped lines (they had no marker, so they end it)', () => {
    const d = createLogDecoder();
    d.push('DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x1000 [fault reason 0x06] PTE Read access is not set', 1);
    assert.equal(d.wantsNextLine, true);
    const out = d.push('DMAR: Dump dmar0 table entries for IOVA 0x1000', 3);
    assert.deepEqual(out.map((e) => [e.line, e.endLine, e.details.walk]), [[1, 1, undefined]]);
    assert.deepEqual(d.end().map((e) => [e.line, e.kind]), [[3, 'page-walk']]);
  });

  it('gives the same events whether it is fed every line or only marker lines and the lines it asks for, with or without other lines in between', () => {
    for (const name of fixtures) {
      for (const input of [text(name), withNoise(text(name), 1), withNoise(text(name), 3)]) {
        const all = decodeLogText(input);
        const skipping = decodeSkipping(input);
        assert.deepEqual(skipping.events, all.events, name);
      }
    }
    // And on a log that is mostly noise, it is fed a small part of it.
    const noisy = Array.from({ length: 1000 }, (_, i) => (i % 100 === 50 ? text('vtd-6x.log').split('\n')[9] : `[ ${i}.0] usb 1-1: noise ${i}`)).join('\n');
    const { fed, events } = decodeSkipping(noisy);
    assert.equal(events.length, 10);
    assert.ok(fed <= 40, `fed ${fed} lines`);
  });

  it('counts every line: events, context, unrecognised; and the IOMMU lines it could not read, with samples', () => {
    const input = ['DMAR: Host address width 46', 'DMAR: something new that no kernel printed yet', 'plain', 'AMD-Vi: also new', ''].join('\n');
    const { events, summary } = decodeLogText(input);
    assert.deepEqual(events, []);
    assert.deepEqual(
      { ...summary, byKind: undefined, byVendor: undefined, byFormat: undefined },
      {
        lines: 4, events: 0, recognisedLines: 1, unrecognisedLines: 3, unrecognisedIommuLines: 2, informationalLines: 1, suppressedMessages: 0, internalErrors: 0,
        unrecognisedSamples: [{ line: 2, text: 'DMAR: something new that no kernel printed yet' }, { line: 4, text: 'AMD-Vi: also new' }],
        byKind: undefined, byVendor: undefined, byFormat: undefined,
      },
    );
    assert.deepEqual(describeSummary(summary), [
      '4 lines: 0 events, 3 lines not recognised (2 of them mention an IOMMU), 1 informational.',
      'not recognised, line 2: DMAR: something new that no kernel printed yet',
      'not recognised, line 4: AMD-Vi: also new',
    ]);
  });

  it('counts a line once however many carriage-return parts it has, recognised if any part is', () => {
    const input = ['DMAR: something new\r[ 1.0] DMAR: Host address width 46', 'DMAR: also new\rplain\rDMAR: and this', ''].join('\n');
    const { summary } = decodeLogText(input);
    assert.deepEqual([summary.lines, summary.recognisedLines, summary.unrecognisedLines, summary.unrecognisedIommuLines], [2, 1, 1, 1]);
    assert.deepEqual(summary.unrecognisedSamples.map((x) => x.line), [2]);
  });

  it('keeps a one-line result for a line: a wrapped tail that tells more replaces it, anything else lets it go', () => {
    const d = createLogDecoder();
    assert.deepEqual(d.push('qemu-system-x86_64: vtd_iommu_translate: detected translation failure', 1), []);
    assert.equal(d.wantsNextLine, true);
    // Joined, it may have a further tail: it is still kept for a line.
    assert.deepEqual(d.push('(dev=00:03:00, iova=0x1d40000030c0)', 2), []);
    const [e] = d.end();
    assert.deepEqual([e!.line, e!.endLine, e!.device, e!.address], [1, 2, '0000:00:03.0', '0x1d40000030c0']);
    assert.deepEqual([d.summary().recognisedLines, d.summary().unrecognisedLines], [2, 0]);
    // A tail that adds nothing is not taken: the event stays as it was, the line unrecognised.
    const d2 = createLogDecoder();
    d2.push('[ 78.0] arm-smmu-v3 a.auto: CMDQ error (cons 0x01000012): Illegal command', 1);
    assert.deepEqual(d2.push('[ 79.0] usb 1-1: new device', 2).map((x) => [x.line, x.endLine, x.reason?.text]), [[1, 1, 'Illegal command']]);
    assert.equal(d2.wantsNextLine, false);
  });

  it('offers a declined line that means nothing alone to the open event again, joined with its tail', () => {
    const { events, summary } = decodeLogText(
      ['[ 1.0] DMAR: [DMA Read NO_PASID] Request device [00:01.0] fault addr 0x1234000 [fault reason 0x06] PTE Read access is not set', '[ 1.0] DMAR: Dump dmar0 table entries for IOVA 0x1234000', '[ 1.0] DMAR: context entry: hi 0x0000000000000302, low', '0x00000000018f9001', '[ 1.0] DMAR: page table not present at level 3', ''].join('\n'),
    );
    assert.deepEqual(events.map((e) => [e.line, e.endLine]), [[1, 5]]);
    assert.deepEqual((events[0]!.details.walk as { steps: unknown[] }).steps, [{ entry: 'context', hi: '0x302', low: '0x18f9001' }, { entry: 'table', level: 3, present: false }]);
    assert.equal(summary.unrecognisedLines, 0);
  });

  it('reads every event of a text whose line ends are all lone CRs, however many (no LF at all)', () => {
    const addrs = Array.from({ length: 200 }, (_, i) => `0x${(0x1000_0000 + i * 0x1000).toString(16)}`);
    const text = addrs.map((a, i) => `[ ${i}.000000] DMAR: [DMA Read NO_PASID] Request device [00:01.0] fault addr ${a} [fault reason 0x06] PTE Read access is not set`).join('\r') + '\r';
    const { events } = decodeLogText(text);
    assert.deepEqual(events.map((e) => e.address), addrs);
    assert.ok(events.every((e) => e.line === 1));
  });

  it('joins a quoted-printable soft break without a space, but not a line that ends in a literal =', () => {
    const qp = decodeLogText('DMAR: [DMA Read NO_PASID] Request device [00:01.0] fault addr 0x12=\n34000 [fault reason 0x06] PTE Read access is not set\n');
    assert.deepEqual(qp.events.map((e) => e.address), ['0x1234000']);
    const wrapped = decodeLogText('(XEN) AMD-Vi: IO_PAGE_FAULT: domain = 0, device id = 0xa1, fault address =\n0xbf695000, flags = 0x10\n');
    assert.deepEqual(wrapped.events.map((e) => [e.device, e.address]), [['0000:00:14.1', '0xbf695000']]);
  });

  it('serialises events with the documented fields first, in order', () => {
    const { events } = decodeLogText(text('vtd-6x.log'));
    for (const e of events) {
      const keys = Object.keys(JSON.parse(JSON.stringify(e)));
      assert.deepEqual(keys.slice(0, 13), ['line', 'endLine', 'vendor', 'kind', 'format', 'device', 'pasid', 'address', 'access', 'reason', 'timestamp', 'iommu', 'details']);
    }
  });
});

describe('readers: formats, markers and numbers', () => {
  const docs = readFileSync(join(root, 'docs/log-formats.md'), 'utf8');
  const seen = new Set(fixtures.flatMap((f) => decodeLogText(text(f)).events.map((e) => e.format)));

  it('every format a fixture produces is catalogued, every catalogued format has a fixture and is documented', () => {
    for (const f of seen) assert.ok(LOG_FORMATS[f], `uncatalogued format ${f}`);
    for (const f of Object.keys(LOG_FORMATS)) {
      assert.ok(seen.has(f), `no fixture produces ${f}`);
      assert.ok(docs.includes(`\`${f}\``), `docs/log-formats.md does not document ${f}`);
    }
  });

  it('every kind a fixture produces is documented', () => {
    const kinds = new Set(fixtures.flatMap((f) => decodeLogText(text(f)).events.map((e) => e.kind)));
    for (const k of kinds) assert.ok(docs.includes(`\`${k}\``), `docs/log-formats.md does not document kind ${k}`);
  });

  it('searches a substring of each marker, so that no marker line is skipped', () => {
    for (const m of [...LOG_MARKERS, ...QEMU_MARKERS, ...TRACE_MARKERS]) {
      assert.ok(SEARCH_KEYS[m], `no search key for ${m}`);
      assert.ok(m.includes(SEARCH_KEYS[m]!), `${SEARCH_KEYS[m]} is not part of ${m}`);
    }
    assert.equal(markersFor('[ 1.0] DMAR: x\n'), LOG_MARKERS);
    assert.equal(markersFor('12@1.5:vtd_reg_write addr 0x1\n'), QEMU_MARKERS);
    assert.equal(markersFor('# tracer: nop\n'), TRACE_MARKERS);
    assert.equal(markersFor('  kworker/1:2-123   [001] d..1.  5.1: qi_submit: x\n'), TRACE_MARKERS);
  });

  it('normalises hex the way the kernel prints 0x%llx, and reads 64-bit words exactly', () => {
    assert.deepEqual(['0x0000000036320440', '76406000', '0X0', 'FFFF', '0x', 'xyz', '0x1' + '0'.repeat(16)].map(normalizeHex), ['0x36320440', '0x76406000', '0x0', '0xffff', null, null, null]);
    assert.equal(hexWord('ffffffffffcc3400')!.toString(), '0xffffffffffcc3400');
    assert.deepEqual([hexWord('0x1')!.hi, hexWord('0x1')!.lo, hexWord('123456789')!.hi, hexWord('123456789')!.lo], [0, 1, 1, 0x23456789]);
    assert.equal(hexWord('12345678901234567'), undefined);
  });
});
