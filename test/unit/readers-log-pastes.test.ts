import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createLogDecoder, decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { SEARCH_KEYS, hasMarker, markersFor } from '../../src/readers/log-markers';
import { splitLine, stripPrefixes } from '../../src/readers/log-prefix';
import { TRANSPORTS, inventedFields, linesOf, pastes, pastesDir, plainLogs, project, root, wrapLine } from '../support/log-pastes';

/** Decodes as the CLI does on raw bytes: only lines with a marker's search key, and every line the decoder asks for. */
function decodeSkipping(text: string): LogEvent[] {
  const lines = linesOf(text);
  const markers = markersFor(text.slice(0, 65536));
  const keys = markers.map((m) => SEARCH_KEYS[m]!);
  const d = createLogDecoder({ markers });
  const events: LogEvent[] = [];
  lines.forEach((l, i) => {
    if (d.wantsNextLine || keys.some((k) => l.includes(k))) events.push(...d.push(l, i + 1));
  });
  events.push(...d.end(lines.length));
  return events;
}

/** The fields that a transport may not change: everything but where the event is (and, for some, when). */
function core(e: LogEvent, keepTimestamp: boolean): unknown[] {
  return [e.vendor, e.kind, e.format, e.device, e.pasid, e.address, e.access, e.reason?.code ?? null, e.iommu, keepTimestamp ? e.timestamp : undefined];
}

describe('readers: logs as people paste them (test/fixtures/pastes)', () => {
  const corpus = pastes();

  it('has a paste for every transport the issue lists, each with an expectation', () => {
    const transports = corpus.map((p) => p.expected.transport).join(' | ');
    for (const t of ['dmesg -x', 'dmesg -T', 'dmesg -t', 'dmesg --color=always', 'journalctl -o short', 'short-precise', 'short-iso', 'journalctl -o cat', 'short-monotonic', 'syslog', 'bare kernel:', 'serial console', 'CR CR LF', 'lone CR', 'IPMI SOL', 'host timestamps', 'Xen console', 'QEMU stderr', 'quoted-printable', 'quoting', '72-column wrap', '80-column wrap', 'HTML']) {
      assert.ok(transports.includes(t), `no paste for ${t}`);
    }
    const vendors = new Set(corpus.flatMap((p) => p.expected.events.map((e) => `${p.expected.transport.startsWith('Xen') ? 'xen ' : ''}${e.vendor}`)));
    for (const v of ['intel', 'amd', 'arm', 'xen intel', 'xen amd', 'xen arm']) assert.ok(vendors.has(v), `no paste with ${v} events`);
  });

  for (const p of corpus) {
    it(`${p.name}: exactly the events and fields the paste holds`, () => {
      const { events, summary } = decodeLogText(p.text);
      assert.deepEqual(events.map(project), p.expected.events);
      assert.equal(summary.internalErrors, 0);
      // Lines that name an IOMMU but are no kernel message (prose, mail headers) may stay unrecognised;
      // nothing else may. (The readers may learn to recognise more, never fewer.)
      assert.ok(summary.unrecognisedIommuLines <= p.expected.unrecognisedIommuLines.length, JSON.stringify(summary.unrecognisedSamples));
      for (const s of summary.unrecognisedSamples) assert.ok(p.expected.unrecognisedIommuLines.includes(s.line), `line ${s.line} not recognised: ${s.text}`);
      const lines = linesOf(p.text);
      for (const e of events) assert.deepEqual(inventedFields(e, lines.slice(e.line - 1, e.endLine)), [], `line ${e.line}`);
    });
  }

  it('gives the same events when only marker lines and the lines the decoder asks for are fed (as the CLI reads)', () => {
    for (const p of corpus) assert.deepEqual(decodeSkipping(p.text).map(project), p.expected.events, p.name);
  });

  it('the CLI prints the same events for each paste file (its line reader and the decoder agree on line ends)', () => {
    const cli = join(root, 'dist/cli.js');
    for (const p of corpus) {
      const r = spawnSync(process.execPath, [cli, 'decode-log', join(pastesDir, p.name), '--format', 'json'], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      const printed = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const events = printed.filter((o) => !('summary' in o)).map((o) => project(o as unknown as LogEvent));
      assert.deepEqual(events, p.expected.events, p.name);
    }
  });
});

describe('readers: a transport changes nothing a log says', () => {
  for (const log of plainLogs()) {
    const lines = linesOf(log.text);
    const plain = decodeLogText(log.text).events;
    for (const tr of TRANSPORTS) {
      // vtd-wrapped.log is a paste already, with quoted-printable soft breaks: encoding it again makes them literal `=`.
      if (log.name === 'vtd-wrapped.log' && tr.name.startsWith('quoted-printable')) continue;
      it(`${log.name} through ${tr.name}`, () => {
        const text = tr.apply(lines);
        const { events, summary } = decodeLogText(text);
        assert.equal(summary.internalErrors, 0);
        // A callers that skips lines never sees the head of a wrapped line that has no marker (the
        // marker went to the tail: `...: 27 callbacks` / `suppressed`), so the decoder does not keep such
        // a head waiting either: those events are lost to the wrap, the others all survive it.
        const markers = markersFor(text.slice(0, 65536));
        const pasted = linesOf(text);
        const head = (e: LogEvent) => (tr.wrap ? wrapLine(lines[e.line - 1]!, tr.wrap.width, tr.wrap.prefix)[0]! : '');
        const keptPlain = plain.filter((e) => !tr.wrap || hasMarker(head(e), markers));
        const keptPasted = events.filter((e) => !tr.wrap || hasMarker(pasted[e.line - 1]!, markers));
        assert.deepEqual(keptPasted.map((e) => core(e, tr.keepsTimestamps)), keptPlain.map((e) => core(e, tr.keepsTimestamps)));
        if (tr.keepsLines) assert.deepEqual(events.map((e) => [e.line, e.endLine]), plain.map((e) => [e.line, e.endLine]));
        for (const e of events) assert.deepEqual(inventedFields(e, pasted.slice(e.line - 1, e.endLine)), [], `line ${e.line}`);
      });
    }
  }
});

describe('readers: the check that no decoded field is invented', () => {
  const event = (fields: Partial<LogEvent>): LogEvent => ({ line: 1, endLine: 1, vendor: 'intel', kind: 'dma-fault', format: 'vtd-dma-5.15', device: null, pasid: null, address: null, access: null, reason: null, timestamp: null, iommu: null, details: {}, ...fields });

  it('finds a value glued across a line break, and one the text does not have at all', () => {
    assert.deepEqual(inventedFields(event({ address: '0x1234' }), ['fault addr 0x12\r34 [fault reason 0x06]']), ['address 0x1234']);
    assert.deepEqual(inventedFields(event({ device: '0000:00:01.0' }), ['Request device [00:0\r1.0]']), ['device 0000:00:01.0']);
    assert.deepEqual(inventedFields(event({ pasid: 0x1f }), ['PASID 0x1\rf']), ['pasid 31']);
    assert.deepEqual(inventedFields(event({ timestamp: '28.366635', iommu: 'dmar1' }), ['[   28.3\r66635] DMAR: Dump dmar0 table']), ['iommu dmar1', 'timestamp 28.366635']);
    assert.deepEqual(inventedFields(event({ reason: { code: 0x71, text: 'SM: x' } }), ['[fault reason 0x06]']), ['reason 113']);
  });

  it('reads what the transports allow: a soft break, escapes, entities, raw words, QEMU decimal devfns', () => {
    assert.deepEqual(inventedFields(event({ address: '0x1234000' }), ['fault addr 0x12=', '> 34000 [fault reason 0x06]']), []);
    assert.deepEqual(inventedFields(event({ address: '0x1234', timestamp: '1.5' }), ['\x1b[32m[ 1.5]\x1b[0m addr 0x12\x1b[1m34', ' &#48;']), []);
    assert.deepEqual(inventedFields(event({ device: '0000:6a:01.0', address: '0x11d5ff080' }), ['IOTLB_INV_TIMEOUT 00006a08 70000000 1d5ff080 00000001']), []);
    assert.deepEqual(inventedFields(event({ device: '0000:00:03.0' }), ['vtd_ce_not_present Context entry bus 0 devfn', '24 not present']), []);
    assert.deepEqual(inventedFields(event({ format: 'amd-not-attached', reason: { code: 2, text: 'IO_PAGE_FAULT' } }), ['AMD-Vi: Event logged [Device not attached to domain properly]']), []);
  });
});

describe('readers: line ends and prefixes of pastes', () => {
  it('a carriage return inside a line is a line break, CR LF and CR CR LF end a line, <br> breaks like CR', () => {
    assert.deepEqual(splitLine('a\r\r'), ['a']);
    assert.deepEqual(splitLine('\ra\rb\r\rc\r'), ['a', 'b', 'c']);
    assert.deepEqual(splitLine('x<br>y<BR/>z<br />'), ['x', 'y', 'z']);
    assert.deepEqual(splitLine('a<p>b</p>c'), ['a', 'b', 'c']);
    // Two messages a lone CR separates are two messages; glued, the first fault's address would run into the second's timestamp.
    const { events } = decodeLogText('[ 1.0] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x12\r[ 2.0] DMAR: [DMA Read NO_PASID] Request device [00:03.0] fault addr 0x34 [fault reason 0x06] PTE Read access is not set\n');
    assert.deepEqual(events.map((e) => [e.line, e.device, e.address, e.timestamp]), [[1, '0000:00:03.0', '0x34', '2.0']]);
  });

  const cases: [string, string, string | null][] = [
    ['<3>1 2024-06-10T04:03:10.000000+02:00 node3 kernel - - - [   77.000000] arm-smmu-v3 x: y', 'arm-smmu-v3 x: y', '77.000000'],
    ['<6>1 2024-06-10T04:03:10Z node3 kernel - - [meta sequenceId="1"] DMAR: x', 'DMAR: x', '2024-06-10T04:03:10Z'],
    ['Jun 10 04:03:08 router kern.err kernel: [   20.1] DMAR: x', 'DMAR: x', '20.1'],
    ['kernel: [   31.0] DMAR: x', 'DMAR: x', '31.0'],
    ['kernel:[   31.0] DMAR: x', 'DMAR: x', '31.0'],
    ['[  603.212934] oldbox kernel: DMAR:[DMA Write] x', 'DMAR:[DMA Write] x', '603.212934'],
    ['Mon 2024-06-10 04:03:08 CEST host kernel: AMD-Vi: x', 'AMD-Vi: x', 'Mon 2024-06-10 04:03:08 CEST'],
    ['Jun 10 04:03:08 [  28.5] DMAR: x', 'DMAR: x', '28.5'],
    ['2024-06-10T04:03:09.421012Z qemu-system-x86_64: vtd_x: y', 'qemu-system-x86_64: vtd_x: y', '2024-06-10T04:03:09.421012Z'],
    ['(XEN) [0000002a5cb1f3d4] AMD-Vi: x', 'AMD-Vi: x', '0000002a5cb1f3d4'],
    ['(d1) [    1.2] nvme: x', 'nvme: x', '1.2'],
    ['[04:03:19.101] [   28.366635] DMAR: x', 'DMAR: x', '28.366635'],
    ['epyc2 login: [ 4789.766842] AMD-Vi: x', 'AMD-Vi: x', '4789.766842'],
    ['root@host:~# [ 4789.766842] AMD-Vi: x', 'AMD-Vi: x', '4789.766842'],
    ['&lt;3&gt;[  104.000000] DMAR: x &quot;y&quot; &#39;z&#39;&nbsp;w', 'DMAR: x "y" \'z\' w', '104.000000'],
    ['&gt; &gt; [ 1.0] DMAR: <b>x</b> <span class="a">y</span>', 'DMAR: x y', '1.0'],
    ['\x1b[32m[ 2.0]\x1b[0m \x1b[33mDMAR: \x1b[0m\x1b[1;31mx\x1b[0m\x1b(B\x1b]0;title\x07', 'DMAR: x', '2.0'],
    ['> fault addr 0x1=\t ', 'fault addr 0x1', null],
    ['> fault addr 0x1 =20=20', 'fault addr 0x1   ', null],
    ['a\x00b\x07c\u00a0d', 'a b c d', null],
  ];
  for (const [raw, msg, timestamp] of cases) {
    it(`strips ${JSON.stringify(raw.slice(0, 48))}`, () => {
      const s = stripPrefixes(raw);
      assert.deepEqual([s.msg, s.timestamp], [msg, timestamp]);
    });
  }

  it('tells a soft break, a record header and a bare continuation apart', () => {
    assert.equal(stripPrefixes('fault addr 0x12=').softBreak, true);
    assert.equal(stripPrefixes('iommu reg =3D').softBreak, false);
    assert.equal(stripPrefixes('(XEN) [VT-D]DMAR: x').stamped, true);
    assert.equal(stripPrefixes('kernel: DMAR: x').stamped, true);
    assert.equal(stripPrefixes('>>   0x0000000000000000').stamped, false);
  });
});
