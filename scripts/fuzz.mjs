// `npm run fuzz`: the log-reader fuzz campaign at length. Builds, then runs
// test/unit/readers-log-fuzz.test.ts with IOMMU_LAB_FUZZ_RUNS batches of 20-60 mutated lines (default
// 100,000) from a fresh seed, printed so that a failure can be replayed. `npm test` runs the same
// campaign with 300 batches and a fixed seed. Usage: npm run fuzz [-- RUNS [SEED]]
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const [runs = '100000', seed = String(Date.now() % 2 ** 31)] = process.argv.slice(2);
if (!/^\d+$/.test(runs) || !/^\d+$/.test(seed)) {
  console.error('usage: npm run fuzz [-- RUNS [SEED]]');
  process.exit(2);
}
if (spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] }).status !== 0) process.exit(1);

process.env.IOMMU_LAB_FUZZ_RUNS = runs;
process.env.IOMMU_LAB_FUZZ_SEED = seed;
console.log(`fuzz: ${runs} batches, seed ${seed} (replay: npm run fuzz -- ${runs} ${seed})`);
const Mocha = createRequire(import.meta.url)('mocha');
const mocha = new Mocha({ ui: 'bdd', timeout: 0, color: process.stdout.isTTY });
mocha.addFile(join(root, 'out/test/unit/readers-log-fuzz.test.js'));
const started = performance.now();
mocha.run((failures) => {
  console.log(`fuzz: ${failures === 0 ? 'no failures' : `${failures} failed`} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  process.exitCode = failures > 0 ? 1 : 0;
});
