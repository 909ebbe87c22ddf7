import { parseArgs, type ParseArgsConfig } from 'node:util';

/**
 * Where a command writes. Injected so that tests can run commands in-process and read what they printed.
 * `out` may return a promise: it then resolves when the reader has taken enough of what was written
 * (backpressure). A command that writes much awaits it, so that a slow reader (`| less`) holds the command
 * back instead of the output piling up in memory.
 */
export interface CliIo {
  out(text: string): void | Promise<void>;
  err(text: string): void;
}

/** What a command is reading, for the last-resort error message; commands update it as they go. */
export interface RunState {
  command?: string;
  input?: string;
  line?: number;
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
  /** Longer help: what it does, its options, examples. The exit statuses are appended to it. */
  readonly help: string;
  /** What exit status 1 means for this command, completing "1 ..." in its help; '\n' continues it on the next line. */
  readonly failure: string;
  readonly options: OptionSpec;
  readonly minPositionals?: number;
  readonly maxPositionals?: number;
  /** Returns the process exit code (see `Exit`). */
  run(args: ParsedArgs, io: CliIo, state: RunState): Promise<number>;
}

/** The exit statuses of every command; README's "The command line" and each command's --help list them. */
export const Exit = {
  ok: 0,
  /** The input (or the output) has a problem: see each command's `failure`. */
  problem: 1,
  usage: 2,
  /** A bug: an exception nobody expected (sysexits' EX_SOFTWARE). */
  internal: 70,
} as const;

/**
 * A mistake in how the command was called, visible without reading any input: one line, exit status 2. Every
 * one has the same shape, `iommu-lab: CMD: what is wrong (see 'iommu-lab CMD --help')`: the message says what
 * is wrong and `failed` adds the pointer, to the command's help by default, or to its synopsis for a wrong
 * number of arguments (`usage: iommu-lab CMD SYNOPSIS`).
 */
export class UsageError extends Error {
  constructor(
    message: string,
    /** What the message points to instead of the help, e.g. `usage: iommu-lab check FILE...`. */
    readonly pointer?: string,
  ) {
    super(message);
  }
}

/** The pointer a usage error of `command` (or of the top level) ends with, when it names none of its own. */
function helpPointer(command: string | undefined): string {
  return `see '${PROGRAM}${command ? ' ' + command : ''} --help'`;
}

/** A problem with an input as a whole (cannot be read, not text, empty): `iommu-lab: CMD: INPUT: message`, status 1. */
export class InputError extends Error {
  constructor(
    readonly input: string,
    message: string,
  ) {
    super(message);
  }
}

/** The output went away or cannot be written. EPIPE (a reader that stopped, as `| head` does) is not an error. */
export class OutputError extends Error {
  constructor(readonly code: string | undefined, message: string) {
    super(message);
  }
}

export const PROGRAM = 'iommu-lab';

export { agree, plural } from '../core/plural';

/** The one-line form of a problem with an input, for stderr. */
export function problemLine(command: string, input: string, message: string): string {
  return `${PROGRAM}: ${command}: ${input}: ${message}\n`;
}

export interface RunOptions {
  /** Print the stack of an internal error too (IOMMU_LAB_DEBUG=1), for a bug report. */
  readonly debug?: boolean;
  /** Filled in as the command runs, for a last-resort handler outside this call. */
  readonly state?: RunState;
}

export async function runCli(argv: readonly string[], commands: readonly Subcommand[], version: string, io: CliIo, options: RunOptions = {}): Promise<number> {
  const state: RunState = options.state ?? {};
  try {
    return await dispatch(argv, commands, version, io, state);
  } catch (e) {
    return failed(e, state.command, state, io, options);
  }
}

/** Turns what a command threw into its one line on stderr and the exit status. */
export function failed(e: unknown, command: string | undefined, state: RunState, io: CliIo, options: RunOptions = {}): number {
  const prefix = `${PROGRAM}: ${command ? command + ': ' : ''}`;
  if (e instanceof UsageError) {
    io.err(`${prefix}${e.message} (${e.pointer ?? helpPointer(command)})\n`);
    return Exit.usage;
  }
  if (e instanceof InputError) {
    io.err(`${prefix}${e.input}: ${e.message}\n`);
    return Exit.problem;
  }
  if (e instanceof OutputError) {
    if (e.code === 'EPIPE') return Exit.ok;
    io.err(`${prefix}cannot write the output: ${e.message}\n`);
    return Exit.problem;
  }
  const where = state.input === undefined ? '' : `${state.input}${state.line === undefined ? '' : ':' + state.line}: `;
  const message = (e instanceof Error ? e.message : String(e)).split('\n')[0];
  const stack = options.debug && e instanceof Error && e.stack ? '\n' + e.stack : '';
  io.err(`${prefix}${where}internal error: ${message} (a bug: please report it with the input; IOMMU_LAB_DEBUG=1 shows where)${stack}\n`);
  return Exit.internal;
}

async function dispatch(
  argv: readonly string[],
  commands: readonly Subcommand[],
  version: string,
  io: CliIo,
  state: RunState,
): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    io.err(mainHelp(commands));
    return Exit.usage;
  }
  // `--help`, `--version` and `help [COMMAND]` take nothing more: an extra argument is bad usage, as for a command.
  const noMore = (synopsis: string, allowed = 0) => {
    if (rest.length > allowed) throw new UsageError(`unexpected argument '${rest[allowed]}'`, `usage: ${PROGRAM} ${synopsis}`);
  };
  if (first === '--help' || first === '-h') {
    noMore(first);
    await io.out(mainHelp(commands));
    return Exit.ok;
  }
  if (first === '--version' || first === '-V') {
    noMore(first);
    await io.out(`${version}\n`);
    return Exit.ok;
  }
  if (first === 'help') {
    noMore('help [COMMAND]', 1);
    if (rest.length === 0) {
      await io.out(mainHelp(commands));
      return Exit.ok;
    }
    const command = find(commands, rest[0]!);
    // A failure to write the help names the command, as any other of its failures does.
    state.command = command.name;
    await io.out(commandHelp(command));
    return Exit.ok;
  }
  if (first.startsWith('-')) throw new UsageError(`unknown option '${first}'`);
  const command = find(commands, first);
  state.command = command.name;
  if (rest.includes('--help') || rest.includes('-h')) {
    await io.out(commandHelp(command));
    return Exit.ok;
  }
  return command.run(parse(command, rest), io, state);
}

function find(commands: readonly Subcommand[], name: string): Subcommand {
  const command = commands.find((c) => c.name === name);
  if (!command) {
    const near = name.length === 0 ? [] : commands.filter((c) => c.name.startsWith(name.slice(0, 3))).map((c) => `'${c.name}'`);
    const hint = near.length > 0 ? `; did you mean ${near.join(' or ')}?` : '';
    throw new UsageError(`unknown command '${name}'${hint}`);
  }
  return command;
}

/** parseArgs' messages, in the words and the lower case of the others. */
function argumentProblem(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: string }).code;
  const option = /'(-[^' ]+)/.exec(text)?.[1];
  if (option !== undefined) {
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option '${option}'`;
    if (/argument missing/.test(text)) return `option '${option}' needs a value`;
    if (/does not take an argument/.test(text)) return `option '${option}' takes no value`;
  }
  // Anything else: the first sentence, lower-cased, so the error stays on one line.
  const first = text.split('\n')[0]!.replace(/\. To specify.*$/, '').replace(/\.$/, '');
  return first.charAt(0).toLowerCase() + first.slice(1);
}

function parse(command: Subcommand, args: string[]): ParsedArgs {
  let parsed: ParsedArgs;
  try {
    parsed = parseArgs({ args, options: command.options, allowPositionals: true, strict: true }) as ParsedArgs;
  } catch (e) {
    throw new UsageError(argumentProblem(e));
  }
  const usage = `usage: ${PROGRAM} ${command.name} ${command.synopsis}`;
  // An empty argument ('' from an unset shell variable) names no file and no value: said so, not looked up.
  for (const [name, value] of Object.entries(parsed.values)) {
    if ((Array.isArray(value) ? value : [value]).includes('')) throw new UsageError(`option '--${name}' has an empty value`);
  }
  const count = parsed.positionals.length;
  const empty = parsed.positionals.indexOf('');
  if (empty !== -1) throw new UsageError(`argument ${empty + 1} is an empty string`, usage);
  if (command.minPositionals !== undefined && count < command.minPositionals) throw new UsageError('missing argument', usage);
  if (command.maxPositionals !== undefined && count > command.maxPositionals) {
    throw new UsageError(`unexpected argument '${parsed.positionals[command.maxPositionals]}'`, usage);
  }
  return parsed;
}

/** Reads a single option value, rejecting anything not in `allowed`. */
export function choice<T extends string>(option: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  const list = allowed.length > 1 ? `${allowed.slice(0, -1).join(', ')} or ${allowed[allowed.length - 1]}` : allowed.join('');
  throw new UsageError(`--${option} must be ${list}, not '${String(value)}'`);
}

/** The exit statuses, as every command's --help ends. */
export function exitStatusHelp(failure: string): string {
  return [
    'Exit status:',
    '  0   success',
    `  1   ${failure.split('\n').join('\n      ')}`,
    '  2   bad usage: unknown option, bad option value, missing, extra or empty argument',
    `  ${Exit.internal}  internal error (a bug; the one-line message names the input)`,
    "An output that cannot be written (a full disk) is status 1 too; a reader that stops early",
    "(as '| head' does) ends the command quietly, with status 0.",
  ].join('\n');
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
    "  -h, --help     show this help, or a command's help after its name",
    '  -V, --version  print the version',
    '',
    `Exit status: 0 success, 1 a problem with the input, 2 bad usage, ${Exit.internal} internal error (see a command's --help).`,
    `Run '${PROGRAM} <command> --help' for the options of one command.`,
    '',
  ].join('\n');
}

export function commandHelp(c: Subcommand): string {
  return `Usage: ${PROGRAM} ${c.name} ${c.synopsis}\n\n${c.summary}\n\n${c.help.trimEnd()}\n\n${exitStatusHelp(c.failure)}\n`;
}
