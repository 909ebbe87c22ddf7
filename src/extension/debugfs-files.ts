import { open } from 'node:fs/promises';
import * as vscode from 'vscode';
import { type DebugfsInput, debugfsFileOrder } from '../readers/debugfs';
import { MAX_DUMP_BYTES } from '../readers/debugfs-dump';

/**
 * The inputs of a debugfs import from what the user picked, read through `vscode.workspace.fs` (so remote
 * and virtual workspaces work): a copied `/sys/kernel/debug/iommu/intel` folder (its known files, with
 * paths relative to it so that the per-device `<dev>/<pasid>/` names survive), or files (each read whole,
 * which also takes `cat *` concatenations and `grep -r .` output).
 */

/** The depth of `<dev>/<pasid>/domain_translation_struct` under the root, with room for one more level. */
const MAX_DEPTH = 4;
/** Above this the extension host would hold too much at once; the CLI reads any size. */

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
    if (total > MAX_DUMP_BYTES) return { error: `The dump is larger than ${MAX_DUMP_BYTES / 2 ** 20} MiB: more than any debugfs dump holds (is it the right folder?).` };
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
const PASID_DIR_LINE = Buffer.from('pasid dir entry: ', 'latin1');
/** A log larger than this is not looked into unasked. */
const MAX_LOG_BYTES = 64 * 1024 * 1024;
/**
 * How much of a candidate's start is searched for a `pasid dir entry:` line: all of a `dmesg` (the kernel's
 * ring buffer, log_buf_len, is at most 32 MiB and mostly far less) and the first days of a busy kern.log.
 */
const PROBE_BYTES = 8 * 1024 * 1024;
/** How much of all the candidates together is looked at: a folder of large logs costs no more than this. */
const MAX_EXAMINED_BYTES = 32 * 1024 * 1024;

/** A file beside the dump that findKernelLog did not read, and why (shown in the output with the report). */
export interface SkippedLog {
  /** As KernelLog.label names it. */
  readonly file: string;
  readonly why: string;
}

/** The errors a side file gives, in the words of strerror (Node's codes, and vscode.FileSystemError's). */
const WHY: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  FileNotFound: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  NoPermissions: 'permission denied',
  ELOOP: 'too many levels of symbolic links',
  EISDIR: 'is a directory',
  FileIsADirectory: 'is a directory',
  EIO: 'input/output error',
};

function whyUnread(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && WHY[code]) return WHY[code]!;
  const text = e instanceof Error ? e.message : String(e);
  const errno = /\b(E[A-Z]{2,})\b/.exec(text)?.[1];
  return (errno && WHY[errno]) || text;
}

/**
 * The start of a file, up to `bytes`, and whether that is all of it: read through the file system for a
 * local file, else (a remote or virtual workspace, whose file system reads only whole files) the whole
 * file if it is no larger, or nothing.
 */
async function readStart(uri: vscode.Uri, size: number, bytes: number): Promise<{ start: Buffer; whole: boolean } | undefined> {
  if (uri.scheme !== 'file') {
    if (size > bytes) return undefined;
    const all = await vscode.workspace.fs.readFile(uri);
    return { start: Buffer.from(all.buffer, all.byteOffset, all.byteLength), whole: true };
  }
  const file = await open(uri.fsPath, 'r');
  try {
    // One byte more than the size says tells that the end was reached (a file may grow meanwhile).
    const buf = Buffer.allocUnsafe(Math.min(bytes, size + 1));
    let n = 0;
    for (let got = 1; got > 0 && n < buf.length; n += got) got = (await file.read(buf, n, buf.length - n, n)).bytesRead;
    return { start: buf.subarray(0, n), whole: n < buf.length };
  } finally {
    await file.close();
  }
}

/**
 * The kernel log beside a dump, if any. debugfs does not print the PASID directory; a kernel log of the same
 * boot with CONFIG_DMAR_DEBUG's table dumps does. The rule: in the folder the dump was picked from (the
 * picked folder, or the folder of the picked files) and then in its parent, a file named `dmesg*`,
 * `kern.log*` or `*.log` (not compressed, at most 64 MiB) that holds a `pasid dir entry:` line in its
 * first 8 MiB; in each folder `dmesg*` first, then `kern.log*`, then `*.log`, each in name order. Not the
 * dump's own files. Such a file is optional: one that cannot be read (a dangling link, no permission) is
 * skipped and named in `skipped` with why, and the search stops after 32 MiB of candidates.
 */
export async function findKernelLog(picked: readonly vscode.Uri[], files: DumpFiles): Promise<{ log: KernelLog | undefined; skipped: SkippedLog[] }> {
  const skipped: SkippedLog[] = [];
  const first = picked[0];
  if (!first) return { log: undefined, skipped };
  const isDir = ((await vscode.workspace.fs.stat(first)).type & vscode.FileType.Directory) !== 0;
  const folder = isDir ? first : vscode.Uri.joinPath(first, '..');
  const own = new Set([...files.uris.values(), ...picked].map((u) => u.toString()));
  const rank = (name: string) => (name.startsWith('dmesg') ? 0 : name.startsWith('kern.log') ? 1 : 2);
  const parent = vscode.Uri.joinPath(folder, '..');
  const places: [vscode.Uri, string][] = [[folder, ''], ...(parent.path !== folder.path ? [[parent, '../'] as [vscode.Uri, string]] : [])];
  let examined = 0;
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
      const label = prefix + name;
      if (examined >= MAX_EXAMINED_BYTES) {
        skipped.push({ file: label, why: `not looked into: ${MAX_EXAMINED_BYTES / 2 ** 20} MiB of logs were` });
        continue;
      }
      try {
        const size = (await vscode.workspace.fs.stat(uri)).size;
        if (size > MAX_LOG_BYTES) {
          skipped.push({ file: label, why: `larger than ${MAX_LOG_BYTES / 2 ** 20} MiB` });
          continue;
        }
        const probe = await readStart(uri, size, Math.min(PROBE_BYTES, MAX_EXAMINED_BYTES - examined));
        if (!probe) {
          skipped.push({ file: label, why: `larger than ${PROBE_BYTES / 2 ** 20} MiB, all that a remote or virtual folder's logs are read for` });
          continue;
        }
        examined += probe.start.length;
        if (probe.start.indexOf(PASID_DIR_LINE) === -1) continue;
        // The chosen one is read whole.
        const log = probe.whole ? { uri, label, input: { path: label, text: new TextDecoder('utf-8').decode(probe.start) } } : await readKernelLog(uri, label);
        return { log, skipped };
      } catch (e) {
        skipped.push({ file: label, why: whyUnread(e) });
      }
    }
  }
  return { log: undefined, skipped };
}

/** Reads a kernel log (one the user picked, or one found beside the dump). */
export async function readKernelLog(uri: vscode.Uri, label = nameOf(uri)): Promise<KernelLog> {
  const text = new TextDecoder('utf-8').decode(await vscode.workspace.fs.readFile(uri));
  return { uri, label, input: { path: label, text } };
}
