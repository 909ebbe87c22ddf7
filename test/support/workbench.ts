import * as assert from 'node:assert/strict';
import type { Page } from 'playwright-core';

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
