// `npm run bench`: builds, then runs every bench/*.bench.ts as its own process. Each prints one JSON line
// per figure: {"name","value","unit","baseline","ratio"} (baseline and ratio null, with a "note", when the
// native twin a figure is compared with could not be built or run: see bench/native/README.md). Lines that
// are not figures go to stderr.
// Benchmarks are measurements, not tests: they never fail the build. Option: a name filter, e.g.
// `npm run bench -- walk`.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const root = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const filter = process.argv[2];
if (spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] }).status !== 0) process.exit(1);

const files = readdirSync(join(root, 'out/bench')).filter((f) => f.endsWith('.bench.js') && (!filter || f.includes(filter))).sort();
for (const f of files) {
  const child = spawn(process.execPath, ['--expose-gc', join(root, 'out/bench', f)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  for await (const line of createInterface({ input: child.stdout })) {
    let figure;
    try {
      figure = JSON.parse(line);
    } catch {
      /* not a figure */
    }
    const ok = figure && ['name', 'value', 'unit', 'baseline', 'ratio'].every((k) => k in figure);
    (ok ? process.stdout : process.stderr).write(line + '\n');
  }
  const code = await new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', resolve)));
  if (code !== 0) process.stderr.write(`bench: ${f} exited with ${code}\n`);
}
