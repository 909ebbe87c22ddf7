import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { MAX_READ, MAX_READS_PER_PART, createLogDecoder } from '../../src/readers/log-decoder';
import type { LogEvent } from '../../src/readers/log-event';
import { explainEvent } from '../../src/readers/log-explain';
import { MAX_LINE, MAX_PARTS, splitLine, stripPrefixes } from '../../src/readers/log-prefix';
import { createLspciReader } from '../../src/readers/lspci';
import { inventedFields, linesOf, logsDir, pastes, plainLogs } from '../support/log-pastes';

/**
 * Fuzzing the log decoder over the lines of every fixture and paste, mutated the way text gets damaged
 * (characters inserted, deleted, repeated, spliced) and the way transports change it (carriage returns,
 * escapes, markup, entities, quoted-printable, quoting, wrapping). `npm test` runs a fixed seed;
 * `npm run fuzz` (scripts/fuzz.mjs) sets IOMMU_LAB_FUZZ_RUNS for a long campaign with a fresh seed.
 */
const RUNS = Number(process.env.IOMMU_LAB_FUZZ_RUNS ?? 300);
const SEED = Number(process.env.IOMMU_LAB_FUZZ_SEED ?? 20260101);
const LONG = process.env.IOMMU_LAB_FUZZ_RUNS !== undefined;

const corpus = [...plainLogs().flatMap((l) => linesOf(l.text)), ...pastes().flatMap((p) => linesOf(p.text))].filter((l) => l.length > 0);

type Mutation =
  | { kind: 'insert'; at: number; text: string }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'replace'; at: number; ch: string }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; at: number; other: string }
  | { kind: 'repeat'; at: number; length: number; times: number }
  // Transports, as they damage a line: these may turn one line into two.
  | { kind: 'break'; at: number; how: 'cr' | 'soft' | 'wrap' | 'br' | 'lf' }
  | { kind: 'escape'; at: number; seq: string }
  | { kind: 'entity'; at: number }
  | { kind: 'quote'; depth: number }
  | { kind: 'qp' };

const ESCAPES = ['\x1b[0m', '\x1b[1;31m', '\x1b[32m', '\x1b[K', '\x1b]0;t\x07', '\x1b(B', '\x1b[', '<b>', '</span>', '<br>', '&amp;', '&#48;', '&lt;', '=3D', '=\n', '\u00a0'];

function mutate(line: string, mutations: Mutation[]): string {
  let s = line;
  for (const m of mutations) {
    const at = 'at' in m ? (s.length === 0 ? 0 : m.at % (s.length + 1)) : 0;
    switch (m.kind) {
      case 'insert': s = s.slice(0, at) + m.text + s.slice(at); break;
      case 'delete': s = s.slice(0, at) + s.slice(at + m.length); break;
      case 'replace': s = s.slice(0, at) + m.ch + s.slice(at + 1); break;
      case 'truncate': s = s.slice(0, at); break;
      case 'splice': s = s.slice(0, at) + m.other.slice(at % (m.other.length + 1)); break;
      case 'repeat': s = s.slice(0, at) + s.slice(at, at + m.length).repeat(m.times) + s.slice(at); break;
      case 'break': {
        if (m.how === 'wrap') {
          // A word wrap breaks at a space.
          const sp = s.indexOf(' ', at);
          if (sp !== -1) s = s.slice(0, sp) + '\n' + s.slice(sp + 1);
        } else s = s.slice(0, at) + { cr: '\r', soft: '=\n', br: '<br>', lf: '\n' }[m.how] + s.slice(at);
        break;
      }
      case 'escape': s = s.slice(0, at) + m.seq + s.slice(at); break;
      case 'entity': if (at < s.length) s = s.slice(0, at) + `&#${s.charCodeAt(at)};` + s.slice(at + 1); break;
      case 'quote': s = s.split('\n').map((l) => '> '.repeat(m.depth) + l).join('\n'); break;
      case 'qp': s = s.replace(/=/g, '=3D'); break;
    }
  }
  return s;
}

// Characters that matter to the readers' patterns, plus control and non-ASCII characters.
const special = fc.constantFrom(...'[]():=x0fF9 \t>-.,#\\"/_@<&;\u0000\r\u001b\u00e9\u2028\u00a0'.split(''));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.oneof(fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 4 }), special) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.nat({ max: 24 }) }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), ch: special }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), other: fc.constantFrom(...corpus) }),
  fc.record({ kind: fc.constant('repeat' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 12 }), times: fc.integer({ min: 2, max: 400 }) }),
  fc.record({ kind: fc.constant('break' as const), at: fc.nat(), how: fc.constantFrom('cr' as const, 'soft' as const, 'wrap' as const, 'br' as const, 'lf' as const) }),
  fc.record({ kind: fc.constant('escape' as const), at: fc.nat(), seq: fc.constantFrom(...ESCAPES) }),
  fc.record({ kind: fc.constant('entity' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('quote' as const), depth: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('qp' as const) }),
);
const mutatedLine = fc.tuple(fc.constantFrom(...corpus), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([line, ms]) => mutate(line, ms));
// Mostly mutated lines, some intact ones so that multi-line events open and get interrupted. A mutation
// may break a line in two: the input is the lines of the joined text.
const batch = fc
  .array(fc.oneof({ arbitrary: mutatedLine, weight: 4 }, { arbitrary: fc.constantFrom(...corpus), weight: 1 }), { minLength: 20, maxLength: 60 })
  .map((ls) => ls.join('\n').split('\n'));

interface Run {
  events: LogEvent[];
  reads: number;
  longest: number;
  parts: number;
}

function decode(input: readonly string[]): Run {
  let reads = 0;
  let longest = 0;
  const d = createLogDecoder({
    onRead: (text) => {
      reads++;
      if (text.length > longest) longest = text.length;
    },
  });
  const events: LogEvent[] = [];
  input.forEach((line, i) => events.push(...d.push(line, i + 1)));
  events.push(...d.end());
  const s = d.summary();
  assert.equal(s.internalErrors, 0);
  assert.equal(s.lines, input.length);
  assert.equal(s.recognisedLines + s.unrecognisedLines, s.lines);
  assert.ok(s.unrecognisedIommuLines <= s.unrecognisedLines);
  assert.equal(s.events, events.length);
  const parts = input.reduce((n, l) => n + splitLine(l).length, 0);
  return { events, reads, longest, parts };
}

describe('readers: fuzzing the log decoder', () => {
  it(`reads ${RUNS} batches of mutated and transported lines without a throw, and every decoded field is in the text`, () => {
    const totals = { inputs: 0, lines: 0, events: 0, violations: [] as string[] };
    fc.assert(
      fc.property(batch, (input) => {
        const { events } = decode(input);
        for (const e of events) {
          // Explanations and JSON must cope with whatever the readers extracted.
          explainEvent(e);
          JSON.parse(JSON.stringify(e));
          assert.ok(e.line >= 1 && e.endLine >= e.line && e.endLine <= input.length);
          const bad = inventedFields(e, input.slice(e.line - 1, e.endLine));
          if (bad.length > 0) {
            totals.violations.push(`${bad.join(', ')} in ${JSON.stringify(input.slice(e.line - 1, e.endLine))}`);
            // The whole input, to replay the first few (the decoder's state depends on the lines before).
            if (LONG && totals.violations.length <= 3) console.log(`  input: ${JSON.stringify(input)}`);
          }
        }
        totals.inputs++;
        totals.lines += input.length;
        totals.events += events.length;
      }),
      { numRuns: RUNS, seed: SEED },
    );
    if (LONG) {
      console.log(`fuzz: seed ${SEED}, ${totals.inputs} inputs, ${totals.lines} lines, ${totals.events} events, ${totals.violations.length} invented fields`);
      for (const v of totals.violations.slice(0, 40)) console.log(`  ${v.slice(0, 400)}`);
    }
    assert.deepEqual(totals.violations.slice(0, 5), []);
    assert.ok(totals.lines >= RUNS * 20, `only ${totals.lines} lines`);
  });

  it('the pastes and fixtures decode with no field that their text lacks', () => {
    for (const text of [...plainLogs().map((l) => l.text), ...pastes().map((p) => p.text)]) {
      const input = linesOf(text);
      for (const e of decode(input).events) assert.deepEqual(inventedFields(e, input.slice(e.line - 1, e.endLine)), [], `line ${e.line}: ${input[e.line - 1]}`);
    }
  });

  // A hang would be work that grows faster than the input. The decoder's work is bounded by
  // construction: a line is cut into at most MAX_PARTS parts, each stripped to at most MAX_LINE
  // characters, each read at most MAX_READS_PER_PART times, each read at most MAX_READ long.
  const pathological = [
    'DMAR: [DMA Read NO_PASID] Request device [' + '0'.repeat(200_000),
    'AMD-Vi: Event logged [' + 'IO_PAGE_FAULT device='.repeat(20_000),
    'arm-smmu-v3 x: event: F_TRANSLATION client: ' + 'a '.repeat(50_000),
    '[' + ' '.repeat(100_000),
    'Jun 10 04:03:08 ' + 'h'.repeat(100_000) + ': x',
    '(XEN) [VT-D]DMAR:[DMA Read] Request device [0000:00:02.0] fault addr ' + 'f'.repeat(100_000),
    'vtd_x ' + 'sid 0x1 '.repeat(20_000),
    '  a-1 [000] ' + '.'.repeat(100_000),
    '\r'.repeat(100_000),
    'DMAR: x\r'.repeat(20_000),
    'DMAR: [DMA Read] Request device [00:02.0] fault addr 1=\n'.repeat(2_000),
    '\x1b['.repeat(50_000),
    '&#'.repeat(50_000) + '&lt;'.repeat(10_000),
    '<br'.repeat(30_000) + '<br>'.repeat(30_000),
    '> '.repeat(100_000) + 'DMAR: x',
    '=3D'.repeat(50_000) + '=',
  ];

  it('does bounded work on pathological lines (huge, repetitive, unterminated, all breaks)', () => {
    for (const line of pathological) {
      const input = line.split('\n');
      const run = decode(input);
      assert.ok(run.longest <= MAX_READ, `read ${run.longest} characters at once`);
      assert.ok(run.reads <= MAX_READS_PER_PART * run.parts, `${run.reads} reads for ${run.parts} parts`);
      for (const l of input) assert.ok(splitLine(l).length <= MAX_PARTS);
    }
  });

  it('does bounded work on every fuzzed batch too', () => {
    fc.assert(
      fc.property(batch, (input) => {
        const run = decode(input);
        assert.ok(run.longest <= MAX_READ && run.reads <= MAX_READS_PER_PART * run.parts);
      }),
      { numRuns: Math.min(RUNS, 100), seed: SEED + 1 },
    );
  });

  it('strips any line to at most MAX_LINE characters', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 3 * MAX_LINE }), mutatedLine, (junk, line) => {
        assert.ok(stripPrefixes(junk + line).msg.length <= MAX_LINE);
        assert.ok(stripPrefixes(line.repeat(50)).msg.length <= MAX_LINE);
      }),
      { numRuns: 100, seed: SEED + 2 },
    );
  });

  it('the lspci reader copes with mutated input too', () => {
    const lspci = readFileSync(join(logsDir, 'lspci-vvv.txt'), 'utf8').split('\n');
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
