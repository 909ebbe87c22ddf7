import * as assert from 'node:assert/strict';
import { byteLines, DecodedLog, documentLines, type LineSource } from '../../src/extension/log-decoding';
import { decodeLogText } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { linesOf, pastes, plainLogs, TRANSPORTS } from '../support/log-pastes';

// The extension's DecodedLog (hovers, "Explain Faults in This Log") skips lines as the CLI does; its events
// must be the decoder's on every line. Its lines are the editor's: VS Code ends a line at LF, CR LF and a
// lone CR (its text model's line breaks), so a text is compared with decodeLogText of the editor's lines;
// in a double-spaced text (a serial capture's CR CR LF: a line break and a blank line for the editor) the
// blank lines are not read.

/** A document as VS Code's text model holds `text`: lines split at CR LF, LF and lone CR. */
function editorDocument(text: string) {
  const lines = text.split(/\r\n|\r|\n/);
  return { lineCount: lines.length, lineAt: (i: number) => ({ text: lines[i]! }) };
}

/** decodeLogText of the editor's lines of `text` (those not blank, if double-spaced), numbered as in the editor. */
function editorEvents(text: string, doubleSpaced: boolean): LogEvent[] {
  const lines = text.split(/\r\n|\r|\n/);
  const numbers: number[] = [];
  const kept: string[] = [];
  lines.forEach((l, i) => {
    if (l !== '' || !doubleSpaced) {
      kept.push(l);
      numbers.push(i + 1);
    }
  });
  return everyLine(kept.join('\n')).map((e) => ({ ...e, line: numbers[e.line - 1]!, endLine: numbers[e.endLine - 1]! }));
}

async function decodeAll(source: LineSource): Promise<LogEvent[]> {
  const log = new DecodedLog(source);
  assert.equal(await log.through(Infinity), true);
  return JSON.parse(JSON.stringify([...log.events].sort((a, b) => a.line - b.line || a.endLine - b.endLine))) as LogEvent[];
}

function everyLine(text: string): LogEvent[] {
  return JSON.parse(JSON.stringify(decodeLogText(text).events.sort((a, b) => a.line - b.line || a.endLine - b.endLine))) as LogEvent[];
}

/** The inputs with a lone CR (a line break for the editor, not for the CLI). */
const LONE_CR = ['ipmi-sol-amd.log', 'serial-minicom-crcrlf-vtd612.log'];
const unnumbered = (e: LogEvent) => ({ ...e, line: 0, endLine: 0 });

function noise(n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`[ ${(i / 1000).toFixed(6)}] usb 1-${i % 7}: new high-speed USB device number ${i % 128} using xhci_hcd`);
  return out.join('\n') + '\n';
}

describe('extension: a decoded log has the decoder\'s events on every line', () => {
  it('for every plain log and every paste, as a document and as the bytes of a file', async () => {
    for (const { name, text } of [...plainLogs(), ...pastes()]) {
      const want = editorEvents(text, name === 'serial-minicom-crcrlf-vtd612.log');
      assert.deepEqual(await decodeAll(documentLines(editorDocument(text))), want, name);
      assert.deepEqual(await decodeAll(byteLines(Buffer.from(text))), want, `${name} (bytes)`);
      // Without a lone CR the editor's lines are the CLI's (LF, CR LF): the events of decodeLogText on the
      // text. With one (the serial captures), the same events, numbered as the editor numbers its lines.
      assert.equal(/\r(?!\n)/.test(text), LONE_CR.includes(name), name);
      if (LONE_CR.includes(name)) assert.deepEqual(want.map(unnumbered), everyLine(text).map(unnumbered), name);
      else assert.deepEqual(want, everyLine(text), name);
    }
  });

  it('numbers a serial capture (CR CR LF, lone CRs) as the editor does, with the events the CLI reads', async () => {
    for (const name of LONE_CR) {
      const paste = pastes().find((p) => p.name === name)!;
      const events = await decodeAll(documentLines(editorDocument(paste.text)));
      const cli = everyLine(paste.text);
      assert.ok(cli.length > 0);
      assert.deepEqual(events.map(unnumbered), cli.map(unnumbered), name);
      // Each event starts on the editor's line that holds its timestamp.
      const lines = paste.text.split(/\r\n|\r|\n/);
      for (const e of events) assert.ok(e.timestamp && lines[e.line - 1]!.includes(`${e.timestamp}]`), `${name}: line ${e.line}`);
    }
    // CR CR LF is two line breaks for the editor (a lone CR, then CR LF): line n of `grep -n` is line 2n-1.
    const fault = '[ 1.0] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x1000 [fault reason 0x06] PTE Read access is not set\r\r\n';
    assert.deepEqual((await decodeAll(documentLines(editorDocument(fault.repeat(3))))).map((e) => [e.line, e.endLine]), [[1, 1], [3, 3], [5, 5]]);
    assert.deepEqual(everyLine(fault.repeat(3)).map((e) => [e.line, e.endLine]), [[1, 1], [2, 2], [3, 3]]);
  });

  for (const tr of TRANSPORTS.filter((t) => t.name !== 'lone CR between lines')) {
    it(`for every plain log through ${tr.name}`, async () => {
      for (const { name, text } of plainLogs()) {
        // As for the CLI (cli-decode-log-streams.test.ts): a tracepoint line wrapped after its event name has no marker.
        if (name === 'intel-iommu.ftrace' && tr.wrap?.width === 72) continue;
        const pasted = tr.apply(linesOf(text));
        assert.deepEqual(await decodeAll(documentLines(editorDocument(pasted))), editorEvents(pasted, tr.name.startsWith('CR CR LF')), name);
      }
    });
  }

  it('reads a kernel log followed by ftrace, QEMU trace and Xen console text', async () => {
    const logs = new Map(plainLogs().map((l) => [l.name, l.text]));
    const parts = ['intel-iommu.ftrace', 'qemu-vtd.trace', 'xen-amd-vi.log', 'xen-vtd.log'];
    const text = noise(1500) + parts.map((p) => logs.get(p)!).join('');
    assert.ok(text.indexOf('# tracer') > 65536);
    const events = await decodeAll(documentLines(editorDocument(text)));
    assert.deepEqual(events, everyLine(text));
    assert.equal(events.length, parts.reduce((n, p) => n + decodeLogText(logs.get(p)!).events.length, 0));
  });

  it('splits the bytes of a file at every line break, also across its 256 KiB chunks', () => {
    const lines: string[] = [];
    for (let i = 0; i < 30_000; i++) lines.push(`line ${i} ${'x'.repeat(i % 50)}`);
    const ends = ['\n', '\r\n', '\r'];
    const text = lines.map((l, i) => l + ends[i % 3]).join('');
    assert.ok(text.length > 3 * 256 * 1024);
    const source = byteLines(Buffer.from(text));
    const got: string[] = [];
    for (let l = source.next(); l !== undefined; l = source.next()) got.push(l);
    assert.deepEqual(got, lines);
  });
});
