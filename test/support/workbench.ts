import * as assert from 'node:assert/strict';
import type { Page } from 'playwright-core';

/**
 * Opens a file with Quick Open (F1, then the file's name or absolute path) and waits until the list offers
 * `row` (the file's name) before Enter, as a user would.
 */
export async function quickOpen(page: Page, query: string, row = query.slice(query.lastIndexOf('/') + 1)): Promise<void> {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor();
  await input.fill(query);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: row }).first().waitFor();
  await page.keyboard.press('Enter');
}

/**
 * What proves the extension runs in a workbench: the Topology tree lists the example with the language
 * server's verdict, and the server's hover decodes the PCI address the grammar made one token.
 */
export async function expectTopologyAnswers(page: Page, pane = page.locator('.pane-body')): Promise<void> {
  const row = pane.locator('.monaco-list-row', { hasText: 'rid-and-pasid-domains.iommu' });
  await row.getByText('no problems').waitFor();
  const bdf = page.locator('.view-line span', { hasText: /^6a:01\.0$/ }).first();
  await bdf.waitFor();
  await bdf.hover();
  const hover = page.locator('.monaco-hover-content', { hasText: 'RID (source-id)' });
  await hover.waitFor();
  assert.match(await hover.innerText(), /RID \(source-id\)\s*0x6a08/);
}
