import { formatDiagnostic } from '../../dsl/diagnostic';
import { lex } from '../../dsl/lexer';
import { choice, Exit, failed, InputError, type Subcommand } from '../framework';
import { readTextFile, readTextStdin, sizeText, STDIN, TOPOLOGY_LIMIT } from '../input';

export const checkCommand: Subcommand = {
  name: 'check',
  summary: 'check .iommu topology files and report their problems with file:line:column',
  synopsis: '[--format text|json] FILE...',
  help: `Checks each topology file ('-' reads stdin) and prints one line per problem, gcc style:
  FILE:LINE:COL: error: MESSAGE [CODE]
A file that cannot be read, is not text, is empty or is larger than ${sizeText(TOPOLOGY_LIMIT.bytes)} is reported on stderr and the
others are still checked.

Options:
  --format text|json  text (default) or one JSON object per file`,
  failure: `a file has an error, or cannot be read, is not text, is empty, or is larger than ${sizeText(TOPOLOGY_LIMIT.bytes)}`,
  options: { format: { type: 'string' } },
  minPositionals: 1,
  async run(args, io, state) {
    const format = choice('format', args.values.format, ['text', 'json'] as const, 'text');
    let status: number = Exit.ok;
    for (const file of args.positionals) {
      const name = file === '-' ? STDIN : file;
      state.input = name;
      let text: string;
      try {
        text = file === '-' ? await readTextStdin(TOPOLOGY_LIMIT) : await readTextFile(file, TOPOLOGY_LIMIT);
        if (text === '') throw new InputError(name, 'empty (0 bytes)');
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        status = Math.max(status, failed(e, 'check', state, io));
        continue;
      }
      const { diagnostics } = lex(text);
      if (diagnostics.some((d) => d.severity === 'error')) status = Math.max(status, Exit.problem);
      if (format === 'json') {
        await io.out(
          JSON.stringify({
            file: name,
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
      } else if (diagnostics.length > 0) {
        await io.out(diagnostics.map((d) => formatDiagnostic(name, d) + '\n').join(''));
      }
    }
    return status;
  },
};
