// Runs every *.test.js in a folder with mocha in this process and writes the stats to a JSON file, so the
// orchestrator can total them even if the suite crashes the process (no file = the suite failed).
// Usage: node scripts/lib/run-mocha.mjs <dir> <result.json> [--grep PATTERN]
import { readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const require = createRequire(import.meta.url);
const Mocha = require('mocha');

const [dir, resultFile] = process.argv.slice(2);
const grepAt = process.argv.indexOf('--grep');
const mocha = new Mocha({ ui: 'bdd', color: process.stdout.isTTY, timeout: 60_000, grep: grepAt > 0 ? process.argv[grepAt + 1] : undefined });
for (const f of readdirSync(dir).sort()) if (f.endsWith('.test.js')) mocha.addFile(resolve(join(dir, f)));
const runner = mocha.run((failures) => {
  writeFileSync(resultFile, JSON.stringify({ planned: runner.total, passes: runner.stats.passes, failures: runner.stats.failures }));
  process.exitCode = failures > 0 ? 1 : 0;
});
