import { commands } from './commands';
import { runCli } from './framework';

declare const IOMMU_LAB_VERSION: string;

// A reader that went away (`iommu-lab decode-log big.log | head`) is not an error: stop quietly, as cat does.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

runCli(process.argv.slice(2), commands, IOMMU_LAB_VERSION, {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
}).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    // A bug, not a usage error: say so plainly, with the stack for the report.
    process.stderr.write(`iommu-lab: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 70;
  },
);
