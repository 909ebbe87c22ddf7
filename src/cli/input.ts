import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { MAX_DUMP_BYTES } from '../readers/debugfs-dump';
import { agree, InputError, plural, UsageError } from './framework';

/**
 * What every command does with the files it is given before their content is parsed: open them, say in
 * words why one cannot be read, and refuse what is not text (a gzip, a binary journal, random bytes)
 * instead of reporting every byte of it as an unrecognised line.
 */

/** How stdin is named in messages. */
export const STDIN = '<stdin>';

/** How much of an input is looked at to decide whether it is text. */
export const SNIFF_BYTES = 64 * 1024;

const OS_ERRORS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'not a directory (a component of the path is a file)',
  EISDIR: 'is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  EIO: 'input/output error',
  ENOSPC: 'no space left on device',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  ENXIO: 'no such device or address',
  ENODEV: 'no such device',
  EINVAL: 'invalid argument',
};

/** An operating-system error in the words of strerror, lower case, without the path (the caller names it). */
export function osErrorText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code && OS_ERRORS[err.code]) return OS_ERRORS[err.code]!;
  // libuv's message is "CODE: text, syscall 'path'".
  const text = (e instanceof Error ? e.message : String(e)).replace(/^E[A-Z0-9]+: /, '').replace(/, \w+ '.*'$/, '');
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** Formats whose first bytes say what they are, with what to do instead. */
const MAGIC: { bytes: number[]; what: string }[] = [
  { bytes: [0x1f, 0x8b], what: 'gzip-compressed; decompress it first, with zcat' },
  { bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], what: 'xz-compressed; decompress it first, with xzcat' },
  { bytes: [0x28, 0xb5, 0x2f, 0xfd], what: 'zstd-compressed; decompress it first, with zstdcat' },
  { bytes: [0x42, 0x5a, 0x68], what: 'bzip2-compressed; decompress it first, with bzcat' },
  { bytes: [0x50, 0x4b, 0x03, 0x04], what: 'a zip archive; extract it first, with unzip' },
  { bytes: [0x4c, 0x50, 0x4b, 0x53, 0x48, 0x48, 0x52, 0x48], what: "a systemd journal file; read it with 'journalctl -k --file FILE'" },
  { bytes: [0x7f, 0x45, 0x4c, 0x46], what: 'an executable (ELF)' },
  { bytes: [0xff, 0xfe], what: 'UTF-16 text; convert it first, with iconv -f UTF-16 -t UTF-8' },
  { bytes: [0xfe, 0xff], what: 'UTF-16 text; convert it first, with iconv -f UTF-16 -t UTF-8' },
];

/**
 * Why the first bytes of an input are not text, or undefined when they are. Text may hold a stray NUL or
 * escape (serial consoles print some across a reboot), so only a known binary format, or control bytes
 * making up more than 1/32 of the sample, count as binary.
 */
export function notTextReason(bytes: Uint8Array): string | undefined {
  for (const m of MAGIC) if (bytes.length >= m.bytes.length && m.bytes.every((b, i) => bytes[i] === b)) return m.what;
  let control = 0;
  let first = -1;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    // Tab, line feed, vertical tab, form feed, carriage return, backspace and escape occur in text.
    if ((b < 0x20 && !(b >= 0x08 && b <= 0x0d) && b !== 0x1b) || b === 0x7f) {
      control++;
      if (first < 0) first = i;
    }
  }
  if (control * 32 > bytes.length) {
    const share = `${control} of its first ${plural(bytes.length, 'byte')} ${agree(control, 'is a control character', 'are control characters')}`;
    return `${share}, the first at offset ${first}`;
  }
  return undefined;
}

/** Throws the "not a text file" problem for `name` when `bytes` (its start) is not text. */
export function requireText(name: string, bytes: Uint8Array): void {
  const reason = notTextReason(bytes.subarray(0, SNIFF_BYTES));
  if (reason !== undefined) throw new InputError(name, `not a text file (${reason})`);
}

/**
 * Refuses to wait on a terminal for input nobody will type: a command that reads stdin when no FILE is
 * given says so instead. An explicit '-' still reads the terminal.
 */
export function requireStdinNotTerminal(what: string): void {
  if (process.stdin.isTTY) throw new UsageError(`no input: stdin is a terminal; name a FILE, pipe ${what} in, or give '-' to read the terminal`);
}

/** Opens a file for reading, as a file descriptor; throws the problem in words when it cannot. */
export function openInput(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new InputError(path, osErrorText(e));
  }
  let isDir = false;
  try {
    isDir = fstatSync(fd).isDirectory();
  } catch (e) {
    closeSync(fd);
    throw new InputError(path, osErrorText(e));
  }
  if (isDir) {
    closeSync(fd);
    throw new InputError(path, OS_ERRORS.EISDIR!);
  }
  return fd;
}

/** readSync with the error in words. */
export function readInput(path: string, fd: number, buf: Uint8Array, offset: number, length: number): number {
  try {
    return readSync(fd, buf, offset, length, null);
  } catch (e) {
    throw new InputError(path, osErrorText(e));
  }
}

/** Whether a path names a directory; a path that cannot be looked at throws its problem. */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (e) {
    throw new InputError(path, osErrorText(e));
  }
}

/**
 * The most a command reads of one input that it must hold whole, with what such an input is. Real inputs stay
 * far below (a topology file is kilobytes; a debugfs dump of a large machine, tens of megabytes; a kernel
 * log of one boot, at most log_buf_len's 32 MiB); what is larger is the wrong file, or one that never ends
 * (/dev/zero, a FIFO), and is refused once that much was read instead of filling the memory.
 */
export interface SizeLimit {
  readonly bytes: number;
  /** Completes "larger than N: ...". */
  readonly why: string;
}

const MiB = 1024 * 1024;
export const TOPOLOGY_LIMIT: SizeLimit = { bytes: 64 * MiB, why: 'more than any topology file holds (is it the right file?)' };
/** All the files of one debugfs dump together (MAX_DUMP_BYTES says why this much). */
export const DUMP_LIMIT: SizeLimit = { bytes: MAX_DUMP_BYTES, why: 'more than any debugfs dump holds (is it the right file?)' };
/** A kernel log read whole (`--dmesg`); below the longest string JavaScript holds (2^29 - 24 characters). */
export const KERNEL_LOG_LIMIT: SizeLimit = { bytes: 256 * MiB, why: 'more than the kernel log of one boot holds (cut out the boot the dump is from)' };

/** `64 MiB`, `1 GiB`: a limit as messages state it. */
export function sizeText(bytes: number): string {
  return bytes >= 1024 * MiB && bytes % (1024 * MiB) === 0 ? `${bytes / (1024 * MiB)} GiB` : bytes % MiB === 0 ? `${bytes / MiB} MiB` : plural(bytes, 'byte');
}

/** The problem of an input larger than `limit`. */
export function tooLarge(name: string, limit: SizeLimit): InputError {
  return new InputError(name, `larger than ${sizeText(limit.bytes)}: ${limit.why}`);
}

/** How much a whole-file read asks for at a time. */
const CHUNK_BYTES = 1024 * 1024;

/**
 * Collects an input read in chunks: whether it is text is decided from its first SNIFF_BYTES (or all of it,
 * if shorter) before more is read, and reading stops with the "larger than" problem past the limit, so an
 * endless input ends the command either way.
 */
async function collect(name: string, next: () => Promise<Uint8Array | undefined>, limit: SizeLimit): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let sniffed = false;
  for (;;) {
    const chunk = await next();
    if (chunk === undefined || chunk.length === 0) break;
    chunks.push(chunk);
    size += chunk.length;
    if (!sniffed && size >= SNIFF_BYTES) {
      requireText(name, Buffer.concat(chunks, size));
      sniffed = true;
    }
    if (size > limit.bytes) throw tooLarge(name, limit);
  }
  const bytes = Buffer.concat(chunks, size);
  if (!sniffed) requireText(name, bytes);
  return bytes.toString('utf8');
}

/** Opens a file for an asynchronous read; a directory, or what cannot be opened, is the InputError in words. */
async function openFile(path: string, name: string): Promise<FileHandle> {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch (e) {
    throw new InputError(name, osErrorText(e));
  }
  try {
    if ((await file.stat()).isDirectory()) throw new InputError(name, OS_ERRORS.EISDIR!);
  } catch (e) {
    await file.close();
    throw e instanceof InputError ? e : new InputError(name, osErrorText(e));
  }
  return file;
}

/**
 * A whole text file, read in chunks up to `limit` (the topology checker and the kernel log of `--dmesg` are
 * parsed whole). Works on what has no size too: a FIFO, a character device, /proc.
 */
export async function readTextFile(path: string, limit: SizeLimit, name = path): Promise<string> {
  const file = await openFile(path, name);
  const buf = Buffer.allocUnsafe(CHUNK_BYTES);
  try {
    return await collect(
      name,
      async () => {
        let n: number;
        try {
          n = (await file.read(buf, 0, CHUNK_BYTES, null)).bytesRead;
        } catch (e) {
          throw new InputError(name, osErrorText(e));
        }
        // A copy of what was read: a pipe returns 64 KiB at a time, which must not each keep a whole buffer.
        return n === 0 ? undefined : Buffer.from(buf.subarray(0, n));
      },
      limit,
    );
  } finally {
    await file.close();
  }
}

/** All of stdin as text, up to `limit`. */
export async function readTextStdin(limit: SizeLimit): Promise<string> {
  const chunks = (process.stdin as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  try {
    return await collect(STDIN, async () => (await chunks.next()).value as Buffer | undefined, limit);
  } finally {
    // Stops reading (and lets the process end) when the input was refused before its end.
    await chunks.return?.();
  }
}
