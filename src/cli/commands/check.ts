import { readFile } from 'node:fs/promises';
import { formatDiagnostic } from '../../dsl/diagnostic';
import { lex } from '../../dsl/lexer';
import { type Subcommand, choice, UsageError } from '../framework';

export const checkCommand: Subcommand = {
  name: 'check',
  summary: 'check .iommu topology files and report their problems with file:line:column',
  synopsis: '[--format text|json] FILE...',
  help: `Checks each topology file and prints one line per problem, gcc style:
  FILE:LINE:COL: error: MESSAGE [CODE]
Exit status: 0 when no file has an error, 1 when one has, 2 on bad usage.

Options:
  --format text|json  text (default) or one JSON object per file`,
  options: { format: { type: 'string' } },
  minPositionals: 1,
  async run(args, io) {
    const format = choice('check', 'format', args.values.format, ['text', 'json'] as const, 'text');
    let failed = false;
    for (const file of args.positionals) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (e) {
        throw new UsageError(`check: cannot read '${file}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      const { diagnostics } = lex(text);
      if (diagnostics.some((d) => d.severity === 'error')) failed = true;
      if (format === 'json') {
        io.out(
          JSON.stringify({
            file,
            diagnostics: diagnostics.map((d) => ({
              line: d.range.start.line + 1,
              column: d.range.start.character + 1,
              endLine: d.range.end.line + 1,
              endColumn: d.range.end.character + 1,
              severity: d.severity,
              code: d.code,
              message: d.message,
            })),
          }) + '\n',
        );
      } else {
        for (const d of diagnostics) io.out(formatDiagnostic(file, d) + '\n');
      }
    }
    return failed ? 1 : 0;
  },
};
