import * as assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { expectTopologyAnswers, quickOpen } from '../support/workbench';
import { LOG_FORMATS } from '../../src/readers/log-formats';

/** What scripts/test.mjs hands to the UI tests: the shared browser and code-server of this run. */
interface UiHarness {
  context: BrowserContext;
  workbenchUrl(folder: string): string;
  root: string;
}

const harness = (globalThis as { __IOMMU_LAB_UI__?: UiHarness }).__IOMMU_LAB_UI__;

describe('workbench UI (Playwright in a real VS Code)', function () {
  this.timeout(90_000);
  let page: Page;
  const shots = join(harness?.root ?? '.', 'test-results');

  before(async function () {
    assert.ok(harness, 'the UI tests run under scripts/test.mjs, which provides the browser and code-server');
    mkdirSync(shots, { recursive: true });
    page = await harness.context.newPage();
    await page.setViewportSize({ width: 1400, height: 860 });
    await page.goto(harness.workbenchUrl(join(harness.root, 'examples')));
    await page.locator('.monaco-workbench .part.statusbar').waitFor({ timeout: 60_000 });
  });

  after(async () => {
    await page?.close();
  });

  it('opens the IOMMU container from the activity bar and renders the welcome view', async () => {
    await page.getByRole('tab', { name: /^IOMMU/ }).click();
    const pane = page.locator('.pane', { has: page.locator('.pane-header', { hasText: /Topology/i }) });
    await pane.getByText('No IOMMU topology is open.').waitFor();
    assert.ok(await pane.getByRole('button', { name: 'Open Topology File' }).isVisible());
    assert.ok(await pane.getByRole('button', { name: 'New Topology File' }).isVisible());
    await page.screenshot({ path: join(shots, 'iommu-welcome.png') });
  });

  it('lists an opened topology file in the tree, highlighted, with server hovers', async () => {
    await quickOpen(page, 'rid-and-pasid-domains.iommu');

    // The grammar made the PCI address one token; the language server explains it on hover.
    await expectTopologyAnswers(page);
    await page.screenshot({ path: join(shots, 'iommu-view.png') });
  });

  it('explains a kernel log\'s DMA fault line on hover, in plain words', async () => {
    // Quick open takes an absolute path: the log fixture lives outside the examples folder.
    await quickOpen(page, join(harness!.root, 'test/fixtures/workspace/kernel-faults.log'));

    const line = page.locator('.view-line', { hasText: '[2f:00.1]' });
    await line.waitFor();
    // A token near the start of the line, so that the editor does not scroll sideways to reach it.
    await line.locator('span', { hasText: /DMAR/ }).last().hover();
    const hover = page.locator('.monaco-hover-content', { hasText: 'tried to read 0x7ebb0000' });
    await hover.waitFor();
    const text = await hover.innerText();
    assert.match(text, /Intel VT-d DMA fault/);
    assert.match(text, /What: device 0000:2f:00\.1 tried to read 0x7ebb0000 without a PASID, and the IOMMU blocked it\./);
    assert.match(text, /Check next:/);
    // The versions as the format catalogue gives them.
    assert.ok(text.includes(`vtd-dma-5.15: ${LOG_FORMATS['vtd-dma-5.15']!.versions}`), text);
    await page.screenshot({ path: join(shots, 'log-hover.png') });
  });
});
