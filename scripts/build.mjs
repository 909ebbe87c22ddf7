// One build for every runtime. `node scripts/build.mjs [--production] [--watch]`.
// Products: dist/extension.js (extension host), dist/server.js (language server process), dist/cli.js,
// dist/webview/<name>.js (one browser bundle per panel), and, outside production, the test and bench
// bundles under out/. Each shipped bundle's esbuild metafile goes to out/meta/<bundle>.json so a test can
// prove what reached it.
import * as esbuild from 'esbuild';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));

/** Webview panels: adding one is one line here plus its folder under src/webview/. */
export const webviews = [
  // { name: 'page-walk', entry: 'src/webview/page-walk/main.ts' },
];

const common = {
  absWorkingDir: root,
  bundle: true,
  sourcemap: production ? false : 'linked',
  sourcesContent: false,
  minify: production,
  metafile: true,
  logLevel: 'silent',
  define: { IOMMU_LAB_VERSION: JSON.stringify(pkg.version) },
  target: 'node20',
};

const node = { ...common, platform: 'node', format: 'cjs', external: ['vscode'] };

/** @type {Array<{name: string, shipped: boolean, options: esbuild.BuildOptions}>} */
const builds = [
  { name: 'extension', shipped: true, options: { ...node, entryPoints: ['src/extension/main.ts'], outfile: 'dist/extension.js' } },
  { name: 'server', shipped: true, options: { ...node, entryPoints: ['src/language-server/main.ts'], outfile: 'dist/server.js' } },
  {
    name: 'cli',
    shipped: true,
    options: { ...node, entryPoints: ['src/cli/main.ts'], outfile: 'dist/cli.js', banner: { js: '#!/usr/bin/env node' } },
  },
  ...webviews.map((w) => ({
    name: `webview-${w.name}`,
    shipped: true,
    options: {
      ...common,
      platform: 'browser',
      format: 'iife',
      target: 'es2022',
      entryPoints: [w.entry],
      outfile: `dist/webview/${w.name}.js`,
    },
  })),
];

if (!production) {
  const tests = async (dir, suffix) =>
    (await readdir(join(root, dir))).filter((f) => f.endsWith(suffix)).map((f) => `${dir}/${f}`);
  // Tests and benchmarks keep their npm dependencies external (mocha, fast-check, playwright-core, ...):
  // they run from this checkout, next to node_modules.
  const testOptions = { ...node, packages: 'external', outbase: '.', outdir: 'out', entryNames: '[dir]/[name]' };
  builds.push(
    { name: 'unit-tests', shipped: false, options: { ...testOptions, entryPoints: await tests('test/unit', '.test.ts') } },
    {
      name: 'vscode-tests',
      shipped: false,
      options: { ...testOptions, entryPoints: [...(await tests('test/vscode', '.ts'))] },
    },
    { name: 'ui-tests', shipped: false, options: { ...testOptions, entryPoints: await tests('test/ui', '.ts') } },
    { name: 'release-tests', shipped: false, options: { ...testOptions, entryPoints: await tests('test/release', '.ts') } },
    { name: 'bench', shipped: false, options: { ...testOptions, entryPoints: await tests('bench', '.ts') } },
  );
}

async function writeMeta(name, metafile) {
  await mkdir(join(root, 'out/meta'), { recursive: true });
  await writeFile(join(root, 'out/meta', `${name}.json`), JSON.stringify(metafile));
}

function report(result, name) {
  for (const m of [...result.errors, ...result.warnings]) {
    const loc = m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}: ` : '';
    console.error(`${loc}${result.errors.includes(m) ? 'error' : 'warning'}: ${m.text} [${name}]`);
  }
}

if (watch) {
  // The problem-matcher lines ("build started"/"build finished") let VS Code tasks track the watcher.
  for (const b of builds) {
    const plugin = {
      name: 'report',
      setup(build) {
        build.onStart(() => console.log(`[watch] build started (${b.name})`));
        build.onEnd(async (result) => {
          report(result, b.name);
          if (result.metafile && b.shipped) await writeMeta(b.name, result.metafile);
          console.log(`[watch] build finished (${b.name})`);
        });
      },
    };
    const ctx = await esbuild.context({ ...b.options, plugins: [plugin] });
    await ctx.watch();
  }
} else {
  const started = performance.now();
  let failed = false;
  await Promise.all(
    builds.map(async (b) => {
      try {
        const result = await esbuild.build(b.options);
        report(result, b.name);
        if (b.shipped) await writeMeta(b.name, result.metafile);
      } catch (e) {
        failed = true;
        if (e.errors) report(e, b.name);
        else console.error(e);
      }
    }),
  );
  if (failed) process.exit(1);
  await chmod(join(root, 'dist/cli.js'), 0o755);
  const ms = Math.round(performance.now() - started);
  console.log(`build: ${builds.length} bundles${production ? ' (production)' : ''} in ${ms} ms -> ${relative(process.cwd(), join(root, 'dist')) || '.'}`);
}
