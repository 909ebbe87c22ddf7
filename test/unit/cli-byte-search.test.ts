import * as assert from 'node:assert/strict';
import { byteSearch } from '../../src/cli/byte-search';
import { ALL_MARKERS, SEARCH_KEYS } from '../../src/readers/log-markers';

// decode-log's searches over its buffer (the WebAssembly SIMD scan, or Buffer#indexOf without it): every
// occurrence of every needle, wherever it lies in the 16-byte blocks, and every newline.

/** Every start of `needle` in `text` within [start, end): the definition, one position at a time. */
function occurrences(text: Buffer, needles: readonly Buffer[], start: number, end: number): number[] {
  const out: number[] = [];
  for (let p = start; p < end; p++) for (const n of needles) if (p + n.length <= end && text.subarray(p, p + n.length).equals(n)) out.push(p);
  return out.sort((a, b) => a - b);
}

function found(search: ReturnType<typeof byteSearch>, start: number, end: number): number[] {
  const out: number[] = [];
  search.find(start, end, out);
  return out.sort((a, b) => a - b);
}

const latin1 = (s: string) => Buffer.from(s, 'latin1');

/** The search as it is where WebAssembly is missing. */
function withoutWebAssembly(): ReturnType<typeof byteSearch> {
  const g = globalThis as { WebAssembly?: unknown };
  const saved = g.WebAssembly;
  g.WebAssembly = undefined;
  try {
    return byteSearch(65536);
  } finally {
    g.WebAssembly = saved;
  }
}

for (const [how, make] of [['WebAssembly SIMD', () => byteSearch(65536)], ['Buffer#indexOf', withoutWebAssembly]] as const) describe(`cli: the byte searches of decode-log (${how})`, () => {
  const search = make();
  let seed = 11;

  it(`runs ${how}`, () => assert.equal(search.simd, how === 'WebAssembly SIMD'));
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;

  it('finds every marker of every format at every offset of a block, and none past the end', () => {
    const needles = [...new Set(ALL_MARKERS.map((m) => SEARCH_KEYS[m]!))].map(latin1);
    search.setNeedles(needles);
    const text = Buffer.alloc(65536, 0x20);
    // Each needle at each of the 16 offsets of a block, with a byte before it that could start it too.
    let at = 0;
    for (const n of needles) {
      for (let off = 0; off < 16; off++) {
        at = (at + 64) & ~15;
        text[at + off - 1] = n[0]!;
        n.copy(text, at + off);
      }
    }
    // Near misses: the anchor of every needle without the rest.
    for (const n of needles) for (let i = 0; i + 1 < n.length; i++) n.copy(text, (at += 40), i, i + 2);
    assert.ok(at < 60_000);
    text.copy(search.buf);
    for (const [start, end] of [[0, 65536], [0, 65535], [7, 40_001], [100, 101], [0, 0]] as const) {
      assert.deepEqual(found(search, start, end), occurrences(text, needles, start, end), `${start}-${end}`);
    }
  });

  it('finds overlapping needles, needles that share an anchor, one-byte needles and more than 16 of them', () => {
    const needles = ['MAR', 'MARS', 'AR', 'ommu', 'mmu', '=\n', '=\r', 'x', ...Array.from({ length: 14 }, (_, i) => `K${i}q`)].map(latin1);
    search.setNeedles(needles);
    const alphabet = 'MARSommu=\n\rxKq0123456789 abc';
    const text = Buffer.from(Array.from({ length: 65536 }, () => alphabet.charCodeAt(rand(alphabet.length))));
    text.copy(search.buf);
    assert.deepEqual(found(search, 0, 65536), occurrences(text, needles, 0, 65536));
    assert.deepEqual(found(search, 1234, 5678), occurrences(text, needles, 1234, 5678));
  });

  it('counts newlines in any range', () => {
    const text = Buffer.from(Array.from({ length: 65536 }, () => (rand(7) === 0 ? 10 : 0x61)));
    text.copy(search.buf);
    for (const [start, end] of [[0, 65536], [3, 17], [15, 16], [1000, 1000]] as const) {
      let n = 0;
      for (let i = start; i < end; i++) if (text[i] === 10) n++;
      assert.equal(search.count(start, end), n, `${start}-${end}`);
    }
  });
});
