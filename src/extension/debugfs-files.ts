import * as vscode from 'vscode';
import { type DebugfsInput, debugfsFileOrder } from '../readers/debugfs';

/**
 * The inputs of a debugfs import from what the user picked, read through `vscode.workspace.fs` (so remote
 * and virtual workspaces work): a copied `/sys/kernel/debug/iommu/intel` folder (its known files, with
 * paths relative to it so that the per-device `<dev>/<pasid>/` names survive), or files (each read whole,
 * which also takes `cat *` concatenations and `grep -r .` output).
 */

/** The depth of `<dev>/<pasid>/domain_translation_struct` under the root, with room for one more level. */
const MAX_DEPTH = 4;
/** Above this the extension host would hold too much at once; the CLI reads any size. */
const MAX_TOTAL_BYTES = 512 * 1024 * 1024;

export interface DumpFiles {
  readonly inputs: DebugfsInput[];
  /** The file each input came from, by input path. */
  readonly uris: ReadonlyMap<string, vscode.Uri>;
  /** What was picked, for messages. */
  readonly label: string;
}

async function listFiles(dir: vscode.Uri, rel: string, depth: number, out: string[]): Promise<void> {
  for (const [name, type] of await vscode.workspace.fs.readDirectory(dir)) {
    const path = rel ? `${rel}/${name}` : name;
    if (type & vscode.FileType.Directory) {
      if (depth < MAX_DEPTH) await listFiles(vscode.Uri.joinPath(dir, name), path, depth + 1, out);
    } else if (type & vscode.FileType.File) out.push(path);
  }
}

const nameOf = (uri: vscode.Uri) => uri.path.slice(uri.path.lastIndexOf('/') + 1);

/** Reads the picked folders and files; a message instead when there is nothing to import. */
export async function readDumpFiles(picked: readonly vscode.Uri[], token?: vscode.CancellationToken): Promise<DumpFiles | { error: string }> {
  const files: { path: string; uri: vscode.Uri }[] = [];
  for (const uri of picked) {
    const stat = await vscode.workspace.fs.stat(uri);
    if (stat.type & vscode.FileType.Directory) {
      const all: string[] = [];
      await listFiles(uri, '', 0, all);
      const ordered = debugfsFileOrder(all);
      if (ordered.length === 0) {
        return { error: `${nameOf(uri)} holds none of the VT-d debugfs files (iommu_regset, dmar_translation_struct, invalidation_queue, ir_translation_struct, <device>/domain_translation_struct). Copy /sys/kernel/debug/iommu/intel from the machine, as root.` };
      }
      for (const rel of ordered) files.push({ path: rel, uri: vscode.Uri.joinPath(uri, ...rel.split('/')) });
    } else {
      files.push({ path: uri.path, uri });
    }
  }
  const inputs: DebugfsInput[] = [];
  const uris = new Map<string, vscode.Uri>();
  const utf8 = new TextDecoder('utf-8');
  let total = 0;
  for (const f of files) {
    if (token?.isCancellationRequested) return { error: 'cancelled' };
    const bytes = await vscode.workspace.fs.readFile(f.uri);
    total += bytes.length;
    if (total > MAX_TOTAL_BYTES) return { error: `The dump is larger than ${MAX_TOTAL_BYTES / 2 ** 20} MiB; import it with \`iommu-lab import-debugfs\`, which has no such limit.` };
    inputs.push({ path: f.path, text: utf8.decode(bytes) });
    if (!uris.has(f.path)) uris.set(f.path, f.uri);
  }
  const label = picked.length === 1 ? nameOf(picked[0]!) : `${picked.length} files`;
  return { inputs, uris, label };
}

/**
 * The file a diagnostic's `file` names. The parser names the input's path, or for a concatenation the
 * file its `==> name <==` banner or `grep -r` prefix names, while the line number stays the input's own.
 */
export function fileOfDiagnostic(files: DumpFiles, file: string): vscode.Uri | undefined {
  const exact = files.uris.get(file);
  if (exact) return exact;
  const all = [...files.uris.values()];
  if (all.length === 1) return all[0];
  const base = file.split(/[\\/]/).pop() ?? '';
  for (const [path, uri] of files.uris) if (base && (path.endsWith(`/${file}`) || file.endsWith(`/${path}`))) return uri;
  return all[0];
}

/** A kernel log read for an import, with the name messages and diagnostics give it. */
export interface KernelLog {
  readonly uri: vscode.Uri;
  /** Its path from the picked folder (`dmesg.txt`, `../kern.log`), or its name when it was picked itself. */
  readonly label: string;
  readonly input: DebugfsInput;
}

/** Names a kernel log may have: `dmesg*`, `kern.log*`, `*.log`; not compressed ones. */
const LOG_NAME = /^(?:dmesg|kern\.log)|\.log$/;
const COMPRESSED = /\.(?:gz|xz|zst|bz2|lz4|zip)$/;
/** The line CONFIG_DMAR_DEBUG's table dump prints after a fault (dmar_fault_dump_ptes(), 5.17+): what the import takes from a log. */
const PASID_DIR_LINE = 'pasid dir entry: ';
/** A log larger than this is not looked into unasked. */
const MAX_LOG_BYTES = 64 * 1024 * 1024;

/**
 * The kernel log beside a dump, if any. debugfs does not print the PASID directory; a kernel log of the same
 * boot with CONFIG_DMAR_DEBUG's table dumps does. The rule: in the folder the dump was picked from (the
 * picked folder, or the folder of the picked files) and then in its parent, a file named `dmesg*`,
 * `kern.log*` or `*.log` (not compressed, at most 64 MiB) that holds a `pasid dir entry:` line; in each
 * folder `dmesg*` first, then `kern.log*`, then `*.log`, each in name order. Not the dump's own files.
 */
export async function findKernelLog(picked: readonly vscode.Uri[], files: DumpFiles): Promise<KernelLog | undefined> {
  const first = picked[0];
  if (!first) return undefined;
  const isDir = ((await vscode.workspace.fs.stat(first)).type & vscode.FileType.Directory) !== 0;
  const folder = isDir ? first : vscode.Uri.joinPath(first, '..');
  const own = new Set([...files.uris.values(), ...picked].map((u) => u.toString()));
  const rank = (name: string) => (name.startsWith('dmesg') ? 0 : name.startsWith('kern.log') ? 1 : 2);
  const parent = vscode.Uri.joinPath(folder, '..');
  const places: [vscode.Uri, string][] = [[folder, ''], ...(parent.path !== folder.path ? [[parent, '../'] as [vscode.Uri, string]] : [])];
  for (const [dir, prefix] of places) {
    let entries: [string, vscode.FileType][];
    try {
      entries = await vscode.workspace.fs.readDirectory(dir);
    } catch {
      continue;
    }
    const names = entries
      .filter(([name, type]) => (type & vscode.FileType.File) !== 0 && LOG_NAME.test(name) && !COMPRESSED.test(name))
      .map(([name]) => name)
      .sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const uri = vscode.Uri.joinPath(dir, name);
      if (own.has(uri.toString())) continue;
      if ((await vscode.workspace.fs.stat(uri)).size > MAX_LOG_BYTES) continue;
      const log = await readKernelLog(uri, prefix + name);
      if (log.input.text.includes(PASID_DIR_LINE)) return log;
    }
  }
  return undefined;
}

/** Reads a kernel log (one the user picked, or one found beside the dump). */
export async function readKernelLog(uri: vscode.Uri, label = nameOf(uri)): Promise<KernelLog> {
  const text = new TextDecoder('utf-8').decode(await vscode.workspace.fs.readFile(uri));
  return { uri, label, input: { path: label, text } };
}
