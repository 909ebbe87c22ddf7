import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as oniguruma from 'vscode-oniguruma';
import { INITIAL, type IGrammar, parseRawGrammar, Registry } from 'vscode-textmate';
import { KEYWORD_GROUPS } from '../../src/dsl/keywords';

const root = join(__dirname, '../../..');
const grammarPath = join(root, 'syntaxes/iommu-topology.tmLanguage.json');

/** Tokenises with the same TextMate engine and Oniguruma build that VS Code uses. */
async function loadGrammar(): Promise<IGrammar> {
  const wasm = readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns: string[]) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s: string) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scope) => (scope === 'source.iommu' ? parseRawGrammar(readFileSync(grammarPath, 'utf8'), grammarPath) : null),
  });
  return (await registry.loadGrammar('source.iommu'))!;
}

/** `text -> innermost scope` for every token on each line. */
function scopes(grammar: IGrammar, text: string): string[] {
  const out: string[] = [];
  let state = INITIAL;
  for (const line of text.split('\n')) {
    const r = grammar.tokenizeLine(line, state);
    for (const t of r.tokens) {
      const piece = line.slice(t.startIndex, t.endIndex);
      if (piece.trim()) out.push(`${piece} -> ${t.scopes.at(-1)}`);
    }
    state = r.ruleStack;
  }
  return out;
}

describe('TextMate grammar', () => {
  let grammar: IGrammar;
  before(async () => {
    grammar = await loadGrammar();
  });

  it('colours exactly the keywords the lexer knows, by group', () => {
    const raw = JSON.parse(readFileSync(grammarPath, 'utf8'));
    const byScope = new Map<string, string[]>(
      raw.repository.keywords.patterns.map((p: { name: string; match: string }) => [
        p.name,
        p.match.replace(/^\(\?<!\[\\w-\]\)\(\?:/, '').replace(/\)\(\?!\[\\w-\]\)$/, '').split('|').sort(),
      ]),
    );
    assert.deepEqual(byScope.get('storage.type.iommu'), [...KEYWORD_GROUPS.objects].sort());
    assert.deepEqual(byScope.get('keyword.control.iommu'), [...KEYWORD_GROUPS.operations].sort());
    assert.deepEqual(byScope.get('keyword.other.iommu'), [...KEYWORD_GROUPS.attributes].sort());
    assert.deepEqual(byScope.get('constant.language.boolean.iommu'), [...KEYWORD_GROUPS.constants].sort());
  });

  it('scopes a device line: keyword, PCI address, identifier, numbers, comment', () => {
    assert.deepEqual(scopes(grammar, 'device 0000:00:02.0 on dmar0 { pasid 20 } # GPU'), [
      'device -> storage.type.iommu',
      '0000:00:02.0 -> constant.numeric.pci-address.iommu',
      'on -> keyword.other.iommu',
      'dmar0 -> variable.other.iommu',
      '{ -> punctuation.section.block.begin.iommu',
      'pasid -> keyword.other.iommu',
      '20 -> constant.numeric.decimal.iommu',
      '} -> punctuation.section.block.end.iommu',
      '# GPU -> comment.line.number-sign.iommu',
    ]);
  });

  it('scopes short BDFs, hex addresses, sizes and hyphenated keywords', () => {
    assert.deepEqual(scopes(grammar, 'map d iova 0xffff_8880_0000_0000 size 2M first-level ff:1f.7'), [
      'map -> keyword.control.iommu',
      'd -> variable.other.iommu',
      'iova -> keyword.other.iommu',
      '0xffff_8880_0000_0000 -> constant.numeric.hex.iommu',
      'size -> keyword.other.iommu',
      '2 -> constant.numeric.decimal.iommu',
      'M -> keyword.other.unit.iommu',
      'first-level -> keyword.other.iommu',
      'ff:1f.7 -> constant.numeric.pci-address.iommu',
    ]);
  });

  it('does not take part of an identifier for a keyword', () => {
    assert.deepEqual(scopes(grammar, 'mapping detach-all'), ['mapping -> variable.other.iommu', 'detach-all -> variable.other.iommu']);
  });

  it('continues block comments across lines and closes strings at the end of the line', () => {
    assert.deepEqual(scopes(grammar, '/* a\nb */ dma\n"open\nunmap'), [
      '/* -> punctuation.definition.comment.begin.iommu',
      ' a -> comment.block.iommu',
      'b  -> comment.block.iommu',
      '*/ -> punctuation.definition.comment.end.iommu',
      'dma -> keyword.control.iommu',
      '" -> string.quoted.double.iommu',
      'open -> string.quoted.double.iommu',
      'unmap -> keyword.control.iommu',
    ]);
  });
});
