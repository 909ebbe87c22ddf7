import { writeSync } from 'node:fs';
import { commands } from './commands';
import { type CliIo, Exit, failed, OutputError, type RunState, runCli } from './framework';
import { osErrorText } from './input';

declare const IOMMU_LAB_VERSION: string;

/**
 * stdout with backpressure. A pipe takes 64 KiB; what does not fit waits in the stream, in memory. So when
 * `write` says the stream is full, `out` returns a promise that resolves on 'drain', and commands await it
 * before reading more input: a slow reader (`| less`) slows the command down instead of the output piling up
 * until the heap runs out. Once the output failed (EPIPE when the reader went away, ENOSPC), every further
 * `out` throws an OutputError, which unwinds the command.
 */
function stdoutIo(): CliIo & { settled(): Promise<OutputError | undefined> } {
  const stdout = process.stdout;
  let failure: OutputError | undefined;
  let waiting: Promise<void> | undefined;
  let wake: ((e?: OutputError) => void) | undefined;
  stdout.on('error', (e: NodeJS.ErrnoException) => {
    failure ??= new OutputError(e.code, osErrorText(e));
    wake?.(failure);
  });
  stdout.on('drain', () => wake?.());
  // Nothing useful can be done when stderr itself fails.
  process.stderr.on('error', () => {});
  return {
    out(text) {
      if (failure) throw failure;
      if (stdout.write(text)) return undefined;
      if (!waiting) {
        waiting = new Promise<void>((resolve, reject) => {
          wake = (e) => {
            wake = undefined;
            waiting = undefined;
            if (e) reject(e);
            else resolve();
          };
        });
        // A failure while nobody awaits yet is seen by the next `out`, not as an unhandled rejection.
        waiting.catch(() => {});
      }
      return waiting;
    },
    err(text) {
      process.stderr.write(text);
    },
    /** Waits until everything written so far has reached the operating system (or failed), and says which. */
    settled() {
      return new Promise((resolve) => stdout.write('', () => resolve(failure)));
    },
  };
}

const debug = Boolean(process.env.IOMMU_LAB_DEBUG);
const state: RunState = {};

// The last resort for what escapes the command's promise (a throw in a stream callback): one line, status 70,
// written synchronously because the process ends right after it.
const lastResort = (e: unknown) => {
  failed(e, state.command, state, { out: () => undefined, err: (text) => void writeSafely(text) }, { debug });
  process.exit(Exit.internal);
};
process.on('uncaughtException', lastResort);
process.on('unhandledRejection', lastResort);

function writeSafely(text: string): void {
  try {
    writeSync(2, text);
  } catch {
    // stderr is gone too.
  }
}

// The process ends by itself once the output has drained: never process.exit() here, it would cut it off.
const io = stdoutIo();
runCli(process.argv.slice(2), commands, IOMMU_LAB_VERSION, io, { debug, state })
  .then(async (code) => {
    // A write that failed after the command's last `out` (a full disk) is reported here, once.
    const failure = await io.settled();
    process.exitCode = failure && code === Exit.ok ? failed(failure, state.command, state, io, { debug }) : code;
  })
  .catch(lastResort);
