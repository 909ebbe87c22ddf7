import { readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { type DebugfsImport, loadDebugfs } from '../readers/debugfs-import';
import { type DebugfsInput, debugfsFileOrder } from '../readers/debugfs';
import { InputError, plural, type RunState } from './framework';
import { isDirectory, osErrorText, readTextFile, readTextStdin, STDIN } from './input';

const MAX_DEPTH = 4;

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
 * The inputs of a debugfs import from what the user named: a copied `iommu/intel` directory (its known files,
 * paths relative to it so the per-device names survive), one or more files (each parsed whole, which also
 * takes `cat *` concatenations and `grep -r .` output), or `-` for stdin. What cannot be read, or is not
 * text, is an InputError naming it.
 */
export async function readDebugfsInputs(paths: readonly string[], state: RunState): Promise<DebugfsInput[]> {
  const inputs: DebugfsInput[] = [];
  for (const path of paths) {
    state.input = path === '-' ? STDIN : path;
    if (path === '-') {
      inputs.push({ path: STDIN, text: await readTextStdin() });
      continue;
    }
    if (!(await isDirectory(path))) {
      inputs.push({ path, text: await readTextFile(path) });
      continue;
    }
    const files: string[] = [];
    await listFiles(path, 0, files);
    const ordered = debugfsFileOrder(files.map((f) => relative(path, f).split(sep).join('/')));
    if (ordered.length === 0) {
      throw new InputError(path, `none of the VT-d debugfs files in this directory (${plural(files.length, 'file')}; expected iommu_regset, dmar_translation_struct, ...)`);
    }
    for (const rel of ordered) inputs.push({ path: rel, text: await readTextFile(join(path, rel), join(path, rel)) });
  }
  return inputs;
}

/**
 * Reads and imports the dump; an input that is empty, or from which nothing was loaded, is an InputError:
 * a report of zero units would only hide that the wrong file was given.
 */
export async function importDebugfsInputs(paths: readonly string[], state: RunState, dmesgPath?: string): Promise<DebugfsImport> {
  const inputs = await readDebugfsInputs(paths, state);
  let dmesg: DebugfsInput | undefined;
  if (dmesgPath !== undefined) {
    state.input = dmesgPath === '-' ? STDIN : dmesgPath;
    dmesg = { path: dmesgPath === '-' ? STDIN : dmesgPath, text: dmesgPath === '-' ? await readTextStdin() : await readTextFile(dmesgPath) };
  }
  const name = paths.map((p) => (p === '-' ? STDIN : p)).join(', ');
  state.input = name;
  if (inputs.every((i) => i.text === '')) throw new InputError(name, 'empty (0 bytes)');
  const imp = loadDebugfs(inputs, dmesg ? { dmesg } : {});
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
