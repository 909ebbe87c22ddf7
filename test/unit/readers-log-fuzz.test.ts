import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { createLogDecoder } from '../../src/readers/log-decoder';
import { explainEvent } from '../../src/readers/log-explain';
import { createLspciReader } from '../../src/readers/lspci';

const root = join(__dirname, '../../..');
const logs = join(root, 'test/fixtures/logs');
const corpus = readdirSync(logs).flatMap((f) => readFileSync(join(logs, f), 'utf8').split('\n').filter((l) => l.length > 0));

type Mutation =
  | { kind: 'insert'; at: number; text: string }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'replace'; at: number; ch: string }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; at: number; other: string }
  | { kind: 'repeat'; at: number; length: number; times: number };

function mutate(line: string, mutations: Mutation[]): string {
  let s = line;
  for (const m of mutations) {
    const at = s.length === 0 ? 0 : m.at % (s.length + 1);
    if (m.kind === 'insert') s = s.slice(0, at) + m.text + s.slice(at);
    else if (m.kind === 'delete') s = s.slice(0, at) + s.slice(at + m.length);
    else if (m.kind === 'replace') s = s.slice(0, at) + m.ch + s.slice(at + 1);
    else if (m.kind === 'truncate') s = s.slice(0, at);
    else if (m.kind === 'splice') s = s.slice(0, at) + m.other.slice(at % (m.other.length + 1));
    else s = s.slice(0, at) + s.slice(at, at + m.length).repeat(m.times) + s.slice(at);
  }
  return s;
}

// Characters that matter to the readers' patterns, plus control and non-ASCII characters.
const special = fc.constantFrom(...'[]():=x0fF9 \t>-.,#\\"/_@\u0000\r\u00e9\u2028'.split(''));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.oneof(fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 4 }), special) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.nat({ max: 24 }) }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), ch: special }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), other: fc.constantFrom(...corpus) }),
  fc.record({ kind: fc.constant('repeat' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 12 }), times: fc.integer({ min: 2, max: 400 }) }),
);
const mutatedLine = fc.tuple(fc.constantFrom(...corpus), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([line, ms]) => mutate(line, ms));
// Mostly mutated lines, some intact ones so that multi-line events open and get interrupted.
const batch = fc.array(fc.oneof({ arbitrary: mutatedLine, weight: 4 }, { arbitrary: fc.constantFrom(...corpus), weight: 1 }), { minLength: 40, maxLength: 80 });

describe('readers: fuzzing the log decoder', () => {
  it('never throws, never trips its internal-error guard, and never takes long on 10,000+ mutated lines', () => {
    let lines = 0;
    let slowest = 0;
    fc.assert(
      fc.property(batch, (input) => {
        const d = createLogDecoder();
        const events = [];
        input.forEach((line, i) => {
          const t = performance.now();
          events.push(...d.push(line, i + 1));
          slowest = Math.max(slowest, performance.now() - t);
        });
        events.push(...d.end());
        for (const e of events) {
          // Explanations and JSON must cope with whatever the readers extracted.
          explainEvent(e);
          JSON.parse(JSON.stringify(e));
          assert.ok(e.line >= 1 && e.endLine >= e.line && e.endLine <= input.length);
        }
        const s = d.summary();
        assert.equal(s.internalErrors, 0);
        assert.equal(s.lines, input.length);
        assert.ok(s.recognisedLines + s.unrecognisedLines === s.lines);
        lines += input.length;
      }),
      { numRuns: 220, seed: 20260101 },
    );
    assert.ok(lines >= 10_000, `only ${lines} lines`);
    assert.ok(slowest < 50, `a line took ${slowest.toFixed(1)} ms`);
  });

  it('handles pathological lines (huge, repetitive, unterminated brackets) in linear time', () => {
    const d = createLogDecoder();
    const evil = [
      'DMAR: [DMA Read NO_PASID] Request device [' + '0'.repeat(200_000),
      'AMD-Vi: Event logged [' + 'IO_PAGE_FAULT device='.repeat(20_000),
      'arm-smmu-v3 x: event: F_TRANSLATION client: ' + 'a '.repeat(50_000),
      '[' + ' '.repeat(100_000),
      'Jun 10 04:03:08 ' + 'h'.repeat(100_000) + ': x',
      '(XEN) [VT-D]DMAR:[DMA Read] Request device [0000:00:02.0] fault addr ' + 'f'.repeat(100_000),
      'vtd_x ' + 'sid 0x1 '.repeat(20_000),
      '  a-1 [000] ' + '.'.repeat(100_000),
    ];
    const t = performance.now();
    evil.forEach((l, i) => d.push(l, i + 1));
    d.end();
    assert.equal(d.summary().internalErrors, 0);
    assert.ok(performance.now() - t < 500, `took ${(performance.now() - t).toFixed(0)} ms`);
  });

  it('the lspci reader copes with mutated input too', () => {
    const lspci = readFileSync(join(logs, 'lspci-vvv.txt'), 'utf8').split('\n');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...lspci), fc.array(mutation, { maxLength: 3 })).map(([l, ms]) => mutate(l, ms)), { maxLength: 60 }), (input) => {
        const r = createLspciReader();
        input.forEach((l, i) => r.push(l, i + 1));
        r.end();
        assert.ok(r.summary().devices <= input.length);
      }),
      { numRuns: 100, seed: 7 },
    );
  });
});
