import { readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { type DebugfsImport, importDebugfs } from '../readers/debugfs-import';
import { type DebugfsInput, debugfsFileOrder, DebugfsParser } from '../readers/debugfs';
import { InputError, plural, type RunState } from './framework';
import { DUMP_LIMIT, isDirectory, KERNEL_LOG_LIMIT, osErrorText, readTextFile, readTextStdin, type SizeLimit, STDIN, tooLarge } from './input';
import { streamLines } from './line-stream';

const MAX_DEPTH = 4;
/**
 * An input whose first this many lines start no debugfs table is not a dump (a kernel log given by mistake,
 * text that never ends): reading stops there rather than at the size limit. Every debugfs file starts a table
 * on its first line, and so do `head`'s and `grep -r .`'s concatenations of them.
 */
const GIVE_UP_LINES = 10_000;

/** How many tables (sections) the parser has started so far. */
function tablesOf(p: DebugfsParser): number {
  const d = p.dump;
  return d.regsets.length + d.translations.length + d.queues.length + d.interrupts.length + d.domains.length + d.latencies.length + d.disabled.length;
}

async function listFiles(dir: string, depth: number, out: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new InputError(dir, osErrorText(e));
  }
  for (const entry of entries) {
    const p = join(dir, entry.name);
    if (entry.isDirectory() && depth < MAX_DEPTH) await listFiles(p, depth + 1, out);
    else if (entry.isFile()) out.push(p);
  }
}

/**
 * Reads a debugfs dump from what the user named into the parser: a copied `iommu/intel` directory (its known
 * files, in the order the parser needs, each named by a path the user can open: `dump/iommu_regset`), one or
 * more files (each a file, or a `cat *` concatenation or `grep -r .` output), or `-` for stdin. Each is
 * streamed line by line, so no file is held whole; `limit` caps the dump as a whole. What cannot be read, or
 * is not text, is an InputError naming it. Returns the bytes read.
 */
export async function parseDebugfsInputs(parser: DebugfsParser, paths: readonly string[], state: RunState, limit: SizeLimit = DUMP_LIMIT): Promise<number> {
  let bytes = 0;
  const read = async (source: string | undefined, name: string, argument: string) => {
    state.input = name;
    parser.begin(name);
    const before = bytes;
    const tables = tablesOf(parser);
    const lines = parser.dump.lines;
    const diagnostics = parser.dump.diagnostics.length;
    const r = await streamLines(source, (text) => void parser.feed(text + '\n'), {
      onChunk: () => {
        if (tablesOf(parser) > tables || parser.dump.lines - lines < GIVE_UP_LINES) return;
        const first = parser.dump.diagnostics[diagnostics];
        const hint = first ? ` (the first, line ${first.line}: ${first.message})` : '';
        throw new InputError(name, `no VT-d debugfs tables found in its first ${plural(parser.dump.lines - lines, 'line')}, so it was not read further${hint}`);
      },
      // Past the limit, the input named is the argument: a directory, or the file itself.
      limit: { bytes: limit.bytes - before, tooLarge: () => tooLarge(argument, before > 0 ? { ...limit, why: `with the files before it, ${limit.why}` } : limit) },
    });
    parser.end();
    bytes += r.bytes;
  };
  for (const path of paths) {
    if (path === '-') {
      await read(undefined, STDIN, STDIN);
      continue;
    }
    if (!(await isDirectory(path))) {
      await read(path, path, path);
      continue;
    }
    const files: string[] = [];
    await listFiles(path, 0, files);
    const ordered = debugfsFileOrder(files.map((f) => relative(path, f).split(sep).join('/')));
    if (ordered.length === 0) {
      throw new InputError(path, `none of the VT-d debugfs files in this directory (${plural(files.length, 'file')}; expected iommu_regset, dmar_translation_struct, ...)`);
    }
    for (const rel of ordered) await read(join(path, rel), join(path, rel), path);
  }
  return bytes;
}

/**
 * Reads and imports the dump; an input that is empty, or from which nothing was loaded, is an InputError:
 * a report of zero units would only hide that the wrong file was given.
 */
export async function importDebugfsInputs(paths: readonly string[], state: RunState, dmesgPath?: string): Promise<DebugfsImport> {
  const parser = new DebugfsParser();
  const bytes = await parseDebugfsInputs(parser, paths, state);
  let dmesg: DebugfsInput | undefined;
  if (dmesgPath !== undefined) {
    const path = dmesgPath === '-' ? STDIN : dmesgPath;
    state.input = path;
    dmesg = { path, text: dmesgPath === '-' ? await readTextStdin(KERNEL_LOG_LIMIT) : await readTextFile(dmesgPath, KERNEL_LOG_LIMIT) };
  }
  const name = paths.map((p) => (p === '-' ? STDIN : p)).join(', ');
  state.input = name;
  if (bytes === 0) throw new InputError(name, 'empty (0 bytes)');
  const imp = importDebugfs(parser.finish(), dmesg ? { dmesg } : {});
  if (imp.units.length === 0 && imp.devices.length === 0) {
    throw new InputError(name, `no VT-d debugfs tables found in ${plural(imp.dump.lines, 'line')}${firstProblem(imp, name)}`);
  }
  return imp;
}

/** The first thing the parser did not understand, as a hint at what the file was. */
function firstProblem(imp: DebugfsImport, name: string): string {
  const d = imp.diagnostics.find((x) => x.severity !== 'info');
  if (!d) return '';
  const where = d.file && d.file !== name ? `${d.file}${d.line > 0 ? `:${d.line}` : ''}: ` : d.line > 0 ? `line ${d.line}: ` : '';
  return ` (the first, ${where}${d.message})`;
}
