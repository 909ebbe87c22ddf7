import * as assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CommandIds, SettingIds, ViewContainerIds, ViewIds, LANGUAGE_CLIENT_ID, LogLanguageIds } from '../../src/extension/manifest';
import { LANGUAGE_ID } from '../../src/protocol/ids';

const root = join(__dirname, '../../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const contributes = pkg.contributes;

const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();
const declaredCommands: string[] = contributes.commands.map((c: { command: string }) => c.command);
const declaredViews: string[] = Object.values(contributes.views as Record<string, { id: string }[]>).flat().map((v) => v.id);

/** Every `view == X` / `viewItem == X` / `webviewId == X` in a when clause. */
function idsInWhen(when: string, key: string): string[] {
  return [...when.matchAll(new RegExp(`\\b${key}\\s*==\\s*'?([\\w.-]+)'?`, 'g'))].map((m) => m[1]!);
}

describe('package.json manifest', () => {
  it('declares exactly the commands that manifest.ts names', () => {
    assert.deepEqual(sorted(declaredCommands), sorted(Object.values(CommandIds)));
  });

  it('puts every command in the IOMMU category with a title', () => {
    for (const c of contributes.commands) {
      assert.equal(c.category, 'IOMMU', c.command);
      assert.ok(c.title?.length > 0, c.command);
    }
  });

  it('declares exactly the views and containers that manifest.ts names', () => {
    assert.deepEqual(sorted(declaredViews), sorted(Object.values(ViewIds)));
    assert.deepEqual(sorted(contributes.viewsContainers.activitybar.map((c: { id: string }) => c.id)), sorted(Object.values(ViewContainerIds)));
    assert.deepEqual(sorted(Object.keys(contributes.views)), sorted(Object.values(ViewContainerIds)));
  });

  it('refers only to declared commands and views in menus', () => {
    for (const [menu, items] of Object.entries(contributes.menus as Record<string, { command?: string; submenu?: string; when?: string }[]>)) {
      for (const item of items) {
        if (item.command) assert.ok(declaredCommands.includes(item.command), `${menu} names unknown command ${item.command}`);
        for (const v of idsInWhen(item.when ?? '', 'view')) assert.ok(declaredViews.includes(v), `${menu} names unknown view ${v}`);
      }
    }
  });

  it('refers only to declared commands and views in welcome content', () => {
    for (const w of contributes.viewsWelcome) {
      assert.ok(declaredViews.includes(w.view), `welcome for unknown view ${w.view}`);
      for (const m of (w.contents as string).matchAll(/\(command:([\w.-]+)/g)) {
        assert.ok(declaredCommands.includes(m[1]!), `welcome links to unknown command ${m[1]}`);
      }
    }
  });

  it('declares the settings that manifest.ts names, including the language client trace setting', () => {
    assert.deepEqual(sorted(Object.keys(contributes.configuration.properties)), sorted(Object.values(SettingIds)));
    assert.equal(SettingIds.traceServer, `${LANGUAGE_CLIENT_ID}.trace.server`);
  });

  it('activates on the language and the views only, never on *', () => {
    assert.ok(!pkg.activationEvents.includes('*'));
    assert.ok(!pkg.activationEvents.includes('onStartupFinished'));
    for (const e of pkg.activationEvents as string[]) {
      const [kind, id] = e.split(':');
      if (kind === 'onLanguage') assert.ok(id === LANGUAGE_ID || (LogLanguageIds as readonly string[]).includes(id!), e);
      else if (kind === 'onView') assert.ok(declaredViews.includes(id!), e);
      else if (kind === 'onCommand') assert.ok(declaredCommands.includes(id!), e);
      else assert.fail(`unexpected activation event ${e}`);
    }
  });

  it('points at files that exist: grammar, language configuration, icons, entry points', () => {
    const files = [
      ...contributes.grammars.map((g: { path: string }) => g.path),
      ...contributes.languages.map((l: { configuration: string }) => l.configuration),
      ...contributes.languages.flatMap((l: { icon?: { light: string; dark: string } }) => (l.icon ? [l.icon.light, l.icon.dark] : [])),
      ...contributes.viewsContainers.activitybar.map((c: { icon: string }) => c.icon),
      pkg.icon,
    ];
    for (const f of files) assert.ok(existsSync(join(root, f)), `${f} is missing`);
    assert.equal(pkg.main, './dist/extension.js');
    assert.equal(pkg.bin['iommu-lab'], './dist/cli.js');
    assert.equal(contributes.languages[0].id, LANGUAGE_ID);
    assert.equal(contributes.grammars[0].language, LANGUAGE_ID);
  });

  it('can run in the VS Code that code-server 4.100.3 ships (1.100.x) and on Node 20', () => {
    assert.equal(pkg.engines.vscode, '^1.100.0');
    assert.equal(pkg.devDependencies['@types/vscode'], '1.100.0');
    assert.equal(pkg.engines.node, '>=20');
  });
});
