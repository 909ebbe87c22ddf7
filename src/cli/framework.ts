import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Where a command writes. Injected so that tests can run commands in-process and read what they printed. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs {
  readonly values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  readonly positionals: string[];
}

export interface Subcommand {
  readonly name: string;
  /** One line for `iommu-lab --help`. */
  readonly summary: string;
  /** Argument synopsis after the command name, e.g. `[options] FILE...`. */
  readonly synopsis: string;
  /** Longer help: what it does, its options, examples. */
  readonly help: string;
  readonly options: OptionSpec;
  readonly minPositionals?: number;
  readonly maxPositionals?: number;
  /** Returns the process exit code: 0 success, 1 the input has problems, 2 bad usage. */
  run(args: ParsedArgs, io: CliIo): Promise<number>;
}

/** A mistake in how the command was called: reported on one line, exit code 2. */
export class UsageError extends Error {}

export const PROGRAM = 'iommu-lab';

export async function runCli(argv: readonly string[], commands: readonly Subcommand[], version: string, io: CliIo): Promise<number> {
  try {
    return await dispatch(argv, commands, version, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${PROGRAM}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

async function dispatch(argv: readonly string[], commands: readonly Subcommand[], version: string, io: CliIo): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    io.err(mainHelp(commands));
    return 2;
  }
  if (first === '--help' || first === '-h') {
    io.out(mainHelp(commands));
    return 0;
  }
  if (first === '--version' || first === '-V') {
    io.out(`${version}\n`);
    return 0;
  }
  if (first === 'help') {
    if (rest.length === 0) {
      io.out(mainHelp(commands));
      return 0;
    }
    io.out(commandHelp(find(commands, rest[0]!)));
    return 0;
  }
  if (first.startsWith('-')) throw new UsageError(`unknown option '${first}' (see '${PROGRAM} --help')`);
  const command = find(commands, first);
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(commandHelp(command));
    return 0;
  }
  return command.run(parse(command, rest), io);
}

function find(commands: readonly Subcommand[], name: string): Subcommand {
  const command = commands.find((c) => c.name === name);
  if (!command) {
    const near = commands.filter((c) => c.name.startsWith(name.slice(0, 3))).map((c) => `'${c.name}'`);
    const hint = near.length > 0 ? `; did you mean ${near.join(' or ')}?` : '';
    throw new UsageError(`unknown command '${name}'${hint} (see '${PROGRAM} --help')`);
  }
  return command;
}

function parse(command: Subcommand, args: string[]): ParsedArgs {
  let parsed: ParsedArgs;
  try {
    parsed = parseArgs({ args, options: command.options, allowPositionals: true, strict: true }) as ParsedArgs;
  } catch (e) {
    // parseArgs messages are multi-sentence; keep the first sentence so the error stays on one line.
    const message = (e instanceof Error ? e.message : String(e)).split('\n')[0]!.replace(/\. To specify.*$/, '');
    throw new UsageError(`${command.name}: ${message} (see '${PROGRAM} ${command.name} --help')`);
  }
  const count = parsed.positionals.length;
  if (command.minPositionals !== undefined && count < command.minPositionals) {
    throw new UsageError(`${command.name}: missing argument, usage: ${PROGRAM} ${command.name} ${command.synopsis}`);
  }
  if (command.maxPositionals !== undefined && count > command.maxPositionals) {
    throw new UsageError(`${command.name}: unexpected argument '${parsed.positionals[command.maxPositionals]}', usage: ${PROGRAM} ${command.name} ${command.synopsis}`);
  }
  return parsed;
}

/** Reads a single option value, rejecting anything not in `allowed`. */
export function choice<T extends string>(command: string, option: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${command}: --${option} must be one of ${allowed.join(', ')} (got '${String(value)}')`);
}

export function mainHelp(commands: readonly Subcommand[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `Usage: ${PROGRAM} <command> [options] [arguments]`,
    '',
    'Simulate and inspect IOMMU setups (Intel VT-d first): topology files, page walks, faults,',
    'and the logs and debugfs dumps that real machines print.',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Options:',
    '  -h, --help     show this help, or a command\'s help after its name',
    '  -V, --version  print the version',
    '',
    `Run '${PROGRAM} <command> --help' for the options of one command.`,
    '',
  ].join('\n');
}

export function commandHelp(c: Subcommand): string {
  return `Usage: ${PROGRAM} ${c.name} ${c.synopsis}\n\n${c.summary}\n\n${c.help.trimEnd()}\n`;
}
