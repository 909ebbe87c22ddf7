import * as assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative, sep } from 'node:path';

const root = join(__dirname, '../../..');
const src = join(root, 'src');

/**
 * What each layer of src/ may import (see docs/ARCHITECTURE.md). `packages` lists the npm packages a
 * layer may use; `node` says whether Node built-ins are allowed.
 */
const RULES: Record<string, { layers: string[]; packages: RegExp; node: boolean }> = {
  core: { layers: ['core'], packages: /^$/, node: false },
  dsl: { layers: ['dsl', 'core'], packages: /^$/, node: false },
  readers: { layers: ['readers', 'core'], packages: /^$/, node: false },
  protocol: { layers: ['protocol', 'core', 'dsl', 'readers'], packages: /^vscode-jsonrpc$|^vscode-languageserver-protocol$|^@vscode\/debugprotocol$/, node: false },
  webview: { layers: ['webview', 'protocol'], packages: /^@vscode-elements\/|^@vscode\/codicons/, node: false },
  'language-server': { layers: ['language-server', 'dsl', 'protocol'], packages: /^vscode-languageserver(\/node)?$|^vscode-languageserver-textdocument$/, node: true },
  'debug-adapter': { layers: ['debug-adapter', 'core', 'dsl', 'readers', 'protocol'], packages: /^@vscode\/debugadapter$|^@vscode\/debugprotocol$/, node: true },
  cli: { layers: ['cli', 'core', 'dsl', 'readers', 'protocol'], packages: /^$/, node: true },
  extension: {
    layers: ['extension', 'core', 'dsl', 'readers', 'protocol', 'debug-adapter'],
    packages: /^vscode$|^vscode-languageclient(\/node)?$|^@vscode\/debugadapter$/,
    node: true,
  },
};

const nodeBuiltins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (name.endsWith('.ts')) yield p;
  }
}

/** Static imports, re-exports, dynamic imports and require() calls, with their line numbers. */
function importsOf(file: string): { spec: string; line: number }[] {
  const text = readFileSync(file, 'utf8');
  const found: { spec: string; line: number }[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|\b(?:import|require)\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    // The match may begin with the whitespace before the keyword; count lines up to the keyword itself.
    const at = m.index + m[0].search(/\S/);
    found.push({ spec, line: text.slice(0, at).split('\n').length });
  }
  return found;
}

/** Checks the imports of `file` as if it lived at `location` in layer `layer`. */
function fileViolations(layer: string, file: string, location: string, where: string): string[] {
  const rule = RULES[layer]!;
  const violations: string[] = [];
  for (const { spec, line } of importsOf(file)) {
    if (spec.startsWith('.')) {
      const target = relative(src, join(location, '..', spec)).split(sep)[0]!;
      if (!rule.layers.includes(target)) violations.push(`${where}:${line}: ${layer} must not import ${target} ('${spec}')`);
    } else if (nodeBuiltins.has(spec) || spec.startsWith('node:')) {
      if (!rule.node) violations.push(`${where}:${line}: ${layer} must not import the Node built-in '${spec}'`);
    } else if (!rule.packages.test(spec)) {
      violations.push(`${where}:${line}: ${layer} must not import the package '${spec}'`);
    }
  }
  return violations;
}

function layerViolations(): string[] {
  const violations: string[] = [];
  for (const layer of readdirSync(src).filter((d) => statSync(join(src, d)).isDirectory())) {
    if (!RULES[layer]) {
      violations.push(`src/${layer}: a layer with no import rule; add it to RULES and docs/ARCHITECTURE.md`);
      continue;
    }
    for (const file of tsFiles(join(src, layer))) {
      violations.push(...fileViolations(layer, file, file, relative(root, file).split(sep).join('/')));
    }
  }
  return violations;
}

/**
 * Inside core, the hardware layer (src/core/hw/) is vendor-neutral: it knows `IommuUnit` and the unit
 * factories, never a vendor folder (vtd/, and the AMD-Vi and SMMUv3 ones to come), the driver or the VMM. It
 * may import only hw/ itself and core's top-level modules (u64.ts, pci.ts, ...).
 */
function hwViolations(file: string, location: string, where: string): string[] {
  const core = join(src, 'core');
  const violations: string[] = [];
  for (const { spec, line } of importsOf(file)) {
    if (!spec.startsWith('.')) continue;
    const parts = relative(core, join(location, '..', spec)).split(sep);
    if (parts.length > 1 && parts[0] !== 'hw') violations.push(`${where}:${line}: core/hw must not import core/${parts[0]} ('${spec}')`);
  }
  return violations;
}

describe('layering rules', () => {
  it('every import in src/ follows the layer rules', () => {
    assert.deepEqual(layerViolations(), []);
  });

  it('catches each kind of forbidden import, in every syntax', () => {
    // A probe that breaks every rule of core, checked as if it lived at src/core/sim/probe.ts.
    mkdirSync(join(root, 'out'), { recursive: true });
    const probe = join(root, 'out', 'layer-probe.ts');
    writeFileSync(
      probe,
      "import * as vscode from 'vscode';\nexport { x } from '../../dsl/lexer';\nimport 'node:fs';\nconst y = require('fs');\nconst z = await import('../../extension/main');\nimport { ok } from '../pci';\n",
    );
    assert.deepEqual(fileViolations('core', probe, join(src, 'core', 'sim', 'probe.ts'), 'probe'), [
      "probe:1: core must not import the package 'vscode'",
      "probe:2: core must not import dsl ('../../dsl/lexer')",
      "probe:3: core must not import the Node built-in 'node:fs'",
      "probe:4: core must not import the Node built-in 'fs'",
      "probe:5: core must not import extension ('../../extension/main')",
    ]);
  });

  it('src/core/hw/ imports no vendor folder (nor the driver or the VMM): only hw/ and core\'s top-level modules', () => {
    const hw = join(src, 'core', 'hw');
    const violations = [...tsFiles(hw)].flatMap((f) => hwViolations(f, f, relative(root, f).split(sep).join('/')));
    assert.deepEqual(violations, []);
  });

  it('the hw/ rule catches an import of a vendor folder in every syntax, and allows hw/ and core\'s top level', () => {
    mkdirSync(join(root, 'out'), { recursive: true });
    const probe = join(root, 'out', 'hw-layer-probe.ts');
    writeFileSync(
      probe,
      "import { VtdUnit } from '../vtd/unit';\nexport type { Kernel } from '../driver/kernel';\nconst w = await import('../vtd/walk');\nimport type { U64 } from '../u64';\nimport { Endpoint } from './endpoint';\nconst v = require('../vmm/vm');\n",
    );
    assert.deepEqual(hwViolations(probe, join(src, 'core', 'hw', 'probe.ts'), 'probe'), [
      "probe:1: core/hw must not import core/vtd ('../vtd/unit')",
      "probe:2: core/hw must not import core/driver ('../driver/kernel')",
      "probe:3: core/hw must not import core/vtd ('../vtd/walk')",
      "probe:6: core/hw must not import core/vmm ('../vmm/vm')",
    ]);
  });

  it('no vscode import and no extension module reaches the server, CLI or webview bundles', () => {
    const metaDir = join(root, 'out', 'meta');
    const bundles = readdirSync(metaDir).filter((f) => f.endsWith('.json')).map((f) => f.replace(/\.json$/, ''));
    assert.ok(bundles.includes('server') && bundles.includes('cli') && bundles.includes('extension'), `bundles: ${bundles}`);
    for (const bundle of bundles.filter((b) => b !== 'extension')) {
      const meta = JSON.parse(readFileSync(join(metaDir, `${bundle}.json`), 'utf8'));
      for (const [input, info] of Object.entries(meta.inputs as Record<string, { imports: { path: string }[] }>)) {
        assert.ok(!input.startsWith('src/extension/'), `${bundle} bundles ${input}`);
        for (const imp of info.imports) assert.notEqual(imp.path, 'vscode', `${bundle}: ${input} imports vscode`);
      }
      for (const output of Object.values(meta.outputs as Record<string, { imports: { path: string }[] }>)) {
        for (const imp of output.imports) assert.notEqual(imp.path, 'vscode', `${bundle} output imports vscode`);
      }
    }
    // The extension bundle keeps vscode external, as the extension host provides it.
    const ext = JSON.parse(readFileSync(join(metaDir, 'extension.json'), 'utf8'));
    const external = Object.values(ext.outputs as Record<string, { imports: { path: string; external?: boolean }[] }>).flatMap((o) => o.imports);
    assert.ok(external.some((i) => i.path === 'vscode' && i.external));
  });
});
