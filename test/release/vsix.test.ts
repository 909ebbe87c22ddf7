// The README's install path, for real: `npm run package` builds dist/iommu-lab.vsix; code-server's own
// `--install-extension` installs it into an empty extensions folder; a code-server started on that folder,
// with no extensionDevelopmentPath, must run the installed copy: activate it, start its language server.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { expectTopologyAnswers, quickOpen } from '../support/workbench';
import { readZip, type ZipEntry } from '../support/zip';
import { chromiumLib, codeServerLib, root, until, type CodeServer } from './harness';

const vsix = join(root, 'dist/iommu-lab.vsix');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const inVsix = (path: string) => posix.join('extension', path);

/** Every file the manifest points at, and the language server the extension starts from dist/server.js. */
function filesTheManifestNeeds(): string[] {
  type Icon = { icon?: string | { light: string; dark: string } };
  const c = pkg.contributes;
  const icons = (o: Icon) =>
    typeof o.icon === 'string' ? [o.icon] : o.icon ? [o.icon.light, o.icon.dark] : [];
  const paths = [
    pkg.main,
    ...Object.values(pkg.bin as Record<string, string>),
    pkg.icon,
    'dist/server.js',
    ...c.languages.flatMap((l: Icon & { configuration: string }) => [l.configuration, ...icons(l)]),
    ...c.grammars.map((g: { path: string }) => g.path),
    ...c.viewsContainers.activitybar.flatMap(icons),
    ...Object.values(c.views as Record<string, object[]>).flat().flatMap(icons),
  ];
  return [...new Set(paths.map((p) => inVsix(posix.normalize(p))))];
}

describe('the VSIX: npm run package, installed by code-server --install-extension', function () {
  this.timeout(240_000);
  let entries: ZipEntry[];
  const entry = (name: string) => entries.find((e) => e.name === name);

  before(function () {
    rmSync(vsix, { force: true });
    const r = spawnSync('npm', ['run', 'package'], { cwd: root, encoding: 'utf8', timeout: 200_000 });
    assert.equal(r.status, 0, `npm run package failed:\n${r.stdout}\n${r.stderr}`);
    entries = readZip(readFileSync(vsix));
  });

  it('is under 2 MB', () => {
    const size = statSync(vsix).size;
    assert.ok(size < 2 * 1024 * 1024, `${vsix} is ${size} bytes`);
  });

  it('holds every file the manifest and the extension load', () => {
    const names = new Set(entries.map((e) => e.name));
    for (const f of ['extension/package.json', 'extension/readme.md', 'extension/changelog.md', 'extension/LICENSE.txt', ...filesTheManifestNeeds()]) {
      assert.ok(names.has(f), `${f} is missing from the VSIX`);
    }
    // The bundles are complete: the packaged manifest is the repository's, so main and bin resolve.
    assert.deepEqual(JSON.parse(entry('extension/package.json')!.read().toString()).main, pkg.main);
  });

  it('holds nothing else: no sources, tests, build intermediates, source maps or node_modules', () => {
    const needed = new Set(['extension.vsixmanifest', '[Content_Types].xml', 'extension/package.json', 'extension/readme.md',
      'extension/changelog.md', 'extension/LICENSE.txt', ...filesTheManifestNeeds()]);
    const examples = readdirSync(join(root, 'examples')).map((f) => `extension/examples/${f}`);
    const extra = entries.map((e) => e.name).filter((n) => !needed.has(n) && !examples.includes(n));
    assert.deepEqual(extra, []);
    for (const e of entries) assert.doesNotMatch(e.name, /^extension\/(src|test|out|node_modules|tools|docs|scripts)\/|\.(map|ts)$/);
  });

  it('carries the README with its images inline (VS Code shows only https: and data: images) and no links into the repository', () => {
    const readme = entry('extension/readme.md')!.read().toString();
    const source = readFileSync(join(root, 'README.md'), 'utf8');
    const images = [...source.matchAll(/!\[[^\]]*\]\(([^)\s]+\.png)\)/g)].map((m) => m[1]!);
    assert.ok(images.length >= 1, 'README.md shows images');
    for (const image of images) {
      assert.ok(readme.includes(`(data:image/png;base64,${readFileSync(join(root, image)).toString('base64')})`), `${image} is not inlined`);
    }
    for (const [, target] of readme.matchAll(/\]\(([^)\s]+)\)/g)) assert.match(target!, /^(https?:|data:image\/|mailto:|#)/, `relative link ${target}`);
    for (const heading of source.match(/^## .*$/gm)!) assert.ok(readme.includes(`\n${heading}\n`), `${heading} is missing`);
  });

  describe('installed into a plain code-server (no extensionDevelopmentPath)', () => {
    let dir: string;
    let cs: CodeServer | undefined;
    let browser: Browser | undefined;
    let page: Page;
    const shots = join(root, 'test-results');

    before(async () => {
      const lib = await codeServerLib();
      const { launchChromium } = await chromiumLib();
      dir = mkdtempSync(join(tmpdir(), 'iommu-lab-vsix-'));
      const out = await lib.installExtension(vsix, dir);
      assert.match(out, /Extension 'iommu-lab\.vsix' was successfully installed/);
      cs = await lib.startCodeServer({ dir });
      browser = await launchChromium();
      page = await (await browser.newContext()).newPage();
      await page.setViewportSize({ width: 1400, height: 860 });
      mkdirSync(shots, { recursive: true });
      await page.goto(cs.workbenchUrl({ folder: join(root, 'examples') }));
      await page.locator('.monaco-workbench .part.statusbar').waitFor({ timeout: 60_000 });
    });

    after(async () => {
      await browser?.close().catch(() => {});
      await cs?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('unpacks into the extensions folder as publisher.name-version', () => {
      const installed = join(dir, 'extensions', `${pkg.publisher}.${pkg.name}-${pkg.version}`);
      assert.equal(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')).version, pkg.version);
      assert.ok(statSync(join(installed, pkg.main)).isFile());
    });

    it('activates: the IOMMU view lists an opened topology file, checked by its language server', async () => {
      assert.doesNotMatch(await page.title(), /Extension Development Host/);
      await page.getByRole('tab', { name: /^IOMMU/ }).click();
      const pane = page.locator('.pane', { has: page.locator('.pane-header', { hasText: /Topology/i }) });
      await pane.getByText('No IOMMU topology is open.').waitFor();

      await quickOpen(page, 'rid-and-pasid-domains.iommu');

      // The file gets the extension's language, the tree (the extension's code) lists it with the
      // language server's verdict, and the server's hover answers.
      await page.locator('.statusbar-item', { hasText: /^IOMMU Topology$/ }).waitFor();
      await expectTopologyAnswers(page, pane);
      await page.screenshot({ path: join(shots, 'installed-vsix.png') });
    });

    it("shows the README with its screenshots on the extension's page", async () => {
      await page.keyboard.press('Escape');
      await page.getByRole('tab', { name: /^Extensions/ }).click();
      await page.locator('.extensions-viewlet .monaco-list-row', { hasText: pkg.displayName }).first().click();
      const readme = page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
      await readme.locator('h1', { hasText: pkg.displayName }).waitFor({ timeout: 30_000 });
      const shot = readme.locator('img[alt^="IOMMU Lab in VS Code"]');
      await shot.waitFor();
      // Decoded and laid out: a broken or blocked image has no natural size.
      // (No DOM types here: the test runs in Node, the callback in the page.)
      type Img = { complete: boolean; naturalWidth: number };
      await until('the screenshot to load', () => shot.evaluate((e) => (e as unknown as Img).complete && (e as unknown as Img).naturalWidth > 0), 10_000);
      await page.screenshot({ path: join(shots, 'installed-vsix-readme.png') });
    });
  });
});
