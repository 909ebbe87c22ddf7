import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { type DebugfsInput, debugfsFileOrder } from '../readers/debugfs';
import { UsageError } from './framework';

const MAX_DEPTH = 4;

async function listFiles(dir: string, depth: number, out: string[]): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory() && depth < MAX_DEPTH) await listFiles(p, depth + 1, out);
    else if (entry.isFile()) out.push(p);
  }
}

/**
 * The inputs of a debugfs import from what the user named: a copied `iommu/intel` directory (its known files,
 * paths relative to it so the per-device names survive), one or more files (each parsed whole, which also
 * takes `cat *` concatenations and `grep -r .` output), or `-` for stdin.
 */
export async function readDebugfsInputs(command: string, paths: readonly string[], stdin: () => Promise<string>): Promise<DebugfsInput[]> {
  const inputs: DebugfsInput[] = [];
  for (const path of paths) {
    if (path === '-') {
      inputs.push({ path: '', text: await stdin() });
      continue;
    }
    let isDir: boolean;
    try {
      isDir = (await stat(path)).isDirectory();
    } catch (e) {
      throw new UsageError(`${command}: cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    if (!isDir) {
      inputs.push({ path, text: await readFile(path, 'utf8') });
      continue;
    }
    const files: string[] = [];
    await listFiles(path, 0, files);
    const ordered = debugfsFileOrder(files.map((f) => relative(path, f).split(sep).join('/')));
    if (ordered.length === 0) throw new UsageError(`${command}: '${path}' holds none of the VT-d debugfs files (iommu_regset, dmar_translation_struct, ...)`);
    for (const rel of ordered) inputs.push({ path: rel, text: await readFile(join(path, rel), 'utf8') });
  }
  return inputs;
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
