import * as assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { hoverAt, numberValue } from '../../src/dsl/hover';
import { lex, MAX_LEXICAL_DIAGNOSTICS } from '../../src/dsl/lexer';
import { formatDiagnostic } from '../../src/dsl/diagnostic';

const kinds = (text: string) => lex(text).tokens.map((t) => `${t.kind}:${t.text}`);

describe('dsl lexer', () => {
  it('splits keywords, identifiers, numbers, PCI addresses, strings and punctuation', () => {
    assert.deepEqual(kinds('device 0000:00:02.0 on dmar0 { ats pasid 20 } "gpu"'), [
      'keyword:device',
      'pci-address:0000:00:02.0',
      'keyword:on',
      'identifier:dmar0',
      'punctuation:{',
      'keyword:ats',
      'keyword:pasid',
      'number:20',
      'punctuation:}',
      'string:"gpu"',
    ]);
  });

  it('reads short BDFs, including ones that start with a hex letter', () => {
    assert.deepEqual(kinds('attach ff:1f.7 d0\nattach 6a:01.0 d1'), [
      'keyword:attach', 'pci-address:ff:1f.7', 'identifier:d0',
      'keyword:attach', 'pci-address:6a:01.0', 'identifier:d1',
    ]);
  });

  it('keeps hyphenated keywords whole and does not confuse them with minus', () => {
    assert.deepEqual(kinds('first-level second-level a -> b 0x1000..0x2000'), [
      'keyword:first-level', 'keyword:second-level', 'identifier:a', 'punctuation:->', 'identifier:b',
      'number:0x1000', 'punctuation:..', 'number:0x2000',
    ]);
  });

  it('accepts hex with separators, binary, decimal and size suffixes', () => {
    assert.deepEqual(kinds('0xffff_8880_0000_0000 0b1010 4096 4K 2M 1G'), [
      'number:0xffff_8880_0000_0000', 'number:0b1010', 'number:4096', 'number:4K', 'number:2M', 'number:1G',
    ]);
    assert.equal(numberValue('0xffff_8880_0000_0000'), 0xffff888000000000n);
    assert.equal(numberValue('2M'), 0x200000n);
  });

  it('skips #, // and /* */ comments but records where they are', () => {
    const r = lex('# a\nmap // b\n/* c\n d */ unmap');
    assert.deepEqual(r.tokens.map((t) => t.text), ['map', 'unmap']);
    assert.equal(r.comments.length, 3);
    assert.deepEqual(r.comments[2]!.start, { line: 2, character: 0 });
    assert.deepEqual(r.diagnostics, []);
  });

  const problems = (text: string) =>
    lex(text).diagnostics.map((d) => `${d.range.start.line + 1}:${d.range.start.character + 1}-${d.range.end.character + 1} ${d.code}: ${d.message}`);

  it('reports a device number above 0x1f at its exact location', () => {
    assert.deepEqual(problems('device 00:20.0 on dmar0'), [
      "1:8-15 bad-pci-address: device 0x20 is out of range (00-1f) in PCI address '00:20.0'",
    ]);
  });

  it('reports a function number above 7', () => {
    assert.deepEqual(problems('\n  attach 00:02.8 d'), ["2:10-17 bad-pci-address: function 8 is out of range (0-7) in PCI address '00:02.8'"]);
  });

  it('reports malformed numbers, empty hex and numbers wider than 64 bits', () => {
    assert.deepEqual(problems('0xZZ 0x 12ab 0x1_0000_0000_0000_0000 18446744073709551616'), [
      "1:1-5 bad-number: malformed hexadecimal number '0xZZ'",
      "1:6-8 bad-number: hexadecimal number '0x' has no digits",
      "1:9-13 bad-number: malformed number '12ab' (use 0x for hexadecimal; size suffixes are K, M, G, T)",
      "1:14-37 bad-number: number '0x1_0000_0000_0000_0000' does not fit in 64 bits",
      "1:38-58 bad-number: number '18446744073709551616' does not fit in 64 bits",
    ]);
    assert.deepEqual(problems('0xffff_ffff_ffff_ffff 18446744073709551615'), []);
  });

  it('reports unterminated strings and block comments where they start', () => {
    assert.deepEqual(problems('a "never closed\nb'), ['1:3-16 unterminated-string: unterminated string: missing closing quote on this line']);
    assert.deepEqual(problems('a\n  /* open'), ['2:3-5 unterminated-comment: unterminated block comment: no closing */']);
  });

  it('reports one diagnostic per run of unexpected characters and keeps going', () => {
    const r = lex('map $$$ unmap ` dma');
    assert.deepEqual(r.tokens.map((t) => t.text), ['map', 'unmap', 'dma']);
    assert.deepEqual(r.diagnostics.map((d) => d.message), ["unexpected character '$' (U+0024)", "unexpected character '`' (U+0060)"]);
  });

  it('gives up politely on binary garbage instead of flooding the editor', () => {
    const garbage = Array.from({ length: 5000 }, (_, i) => `\u0001 ${i % 2 ? '$' : '%'} `).join('');
    const r = lex(garbage);
    assert.equal(r.diagnostics.length, MAX_LEXICAL_DIAGNOSTICS + 1);
    assert.equal(r.diagnostics.at(-1)!.code, 'too-many-errors');
  });

  it('formats diagnostics gcc style with 1-based positions', () => {
    const [d] = lex('\n   $').diagnostics;
    assert.equal(formatDiagnostic('t.iommu', d!), "t.iommu:2:4: error: unexpected character '$' (U+0024) [unexpected-character]");
  });

  it('never throws, and its tokens and diagnostics tile the input in order', () => {
    const alphabet = fc.constantFrom(...'ab0x1f:.-_ #/*"\\\n\t{}$9KG'.split(''), '00:02.0', '0x', '/*', '*/', '\u00e9', '\ud83d\ude00');
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 60 }), (parts) => {
        const text = parts.join('');
        const r = lex(text);
        // Tokens and comments never overlap and stay in order; a diagnostic may point into a comment
        // (an unterminated one) but never into a token.
        const spans = [...r.tokens.map((t) => t.range), ...r.comments].sort((a, b) => a.startOffset - b.startOffset);
        let last = 0;
        for (const s of spans) {
          assert.ok(s.startOffset >= last, `overlapping spans in ${JSON.stringify(text)}`);
          assert.ok(s.endOffset > s.startOffset);
          last = s.endOffset;
        }
        assert.ok(last <= text.length);
        for (const d of r.diagnostics) {
          assert.ok(d.range.endOffset <= text.length && d.range.endOffset > d.range.startOffset);
          for (const t of r.tokens) {
            assert.ok(d.range.endOffset <= t.range.startOffset || d.range.startOffset >= t.range.endOffset, `diagnostic inside a token in ${JSON.stringify(text)}`);
          }
        }
        for (const t of r.tokens) assert.equal(text.slice(t.range.startOffset, t.range.endOffset), t.text);
      }),
      { numRuns: 2000 },
    );
  });

  it('lexes every example and fixture without problems except the deliberate one', () => {
    const root = join(__dirname, '../../..');
    for (const dir of ['examples', 'test/fixtures/workspace']) {
      for (const f of readdirSync(join(root, dir)).filter((f) => f.endsWith('.iommu'))) {
        const r = lex(readFileSync(join(root, dir, f), 'utf8'));
        if (f === 'lexical-error.iommu') assert.equal(r.diagnostics.length, 2, f);
        else assert.deepEqual(r.diagnostics, [], f);
      }
    }
  });
});

describe('dsl hover', () => {
  it('decodes a PCI address into its RID', () => {
    const text = 'attach 6a:01.0 d';
    const h = hoverAt(lex(text), text.indexOf('6a'))!;
    assert.match(h.contents, /RID \(source-id\) `0x6a08`/);
    assert.match(h.contents, /devfn `0x08`/);
    assert.equal(h.range.startOffset, 7);
  });

  it('shows hex, decimal and size for numbers, and nothing between tokens', () => {
    const text = 'size 2M  x';
    assert.equal(hoverAt(lex(text), 5)!.contents, '`0x200000` · `2097152` · 2 MiB');
    assert.equal(hoverAt(lex(text), 7), undefined);
  });
});
