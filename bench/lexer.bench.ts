// Lexing a large topology file, against JSON.parse of a document of the same size built from the same
// lines: both are single passes over text, so the ratio says how far the hand-written lexer is from V8's
// native parser.
import { lex } from '../src/dsl/lexer';
import { consume, nsPerOp, report } from './lib';

const lines: string[] = [];
for (let i = 0, size = 0; size < 1 << 20; i++) {
  const bus = (i >> 5) & 0xff;
  const dev = i & 0x1f;
  const bdf = `0000:${bus.toString(16).padStart(2, '0')}:${dev.toString(16).padStart(2, '0')}.0`;
  lines.push(`device ${bdf} on dmar0 { ats pri pasid 20 }   # device ${i}`);
  lines.push(`map d${i} iova 0x${(i * 0x200000).toString(16)} hpa 0x${(0x80000000 + i * 0x200000).toString(16)} size 2M read write`);
  size += lines.at(-2)!.length + lines.at(-1)!.length + 2;
}
const text = lines.join('\n');
const json = JSON.stringify(lines);

const lexNs = nsPerOp((ops) => {
  for (let i = 0; i < ops; i++) consume(lex(text).tokens.length);
}, 3, 5);
const parseNs = nsPerOp((ops) => {
  for (let i = 0; i < ops; i++) consume((JSON.parse(json) as string[]).length);
}, 3, 5);

report('dsl.lex_1MiB', lexNs / text.length, 'ns/byte', parseNs / json.length);
