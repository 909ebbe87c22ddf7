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
