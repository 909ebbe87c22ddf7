// Regenerates test/fixtures/workspace/debugfs-dump/: the VT-d debugfs directory (as a 6.7+ kernel shows it)
// of a small simulated machine, for the extension-host tests of "IOMMU: Import debugfs Dump". The files are
// checked in; run this only when the renderer's format changes:
//   npx esbuild test/support/make-debugfs-fixture.ts --bundle --platform=node --log-level=warning | node - --write
// The machine: one scalable-mode unit, dmar0 at 0xaa3fc000, and
// - 00:02.0 in its first-stage default DMA domain, IOVA 0x100000 -> 0x80000000 (64 KiB, read/write);
// - 6a:01.0 (ATS, PRI, PASID) in its default domain, IOVA 0x200000 -> 0x90000000 (4 KiB, read only), and
//   PASID 5 attached to a second-stage domain, IOVA 0x40000000 -> 0x123400000 (4 KiB, read/write).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { kernelDebugfsView, renderDebugfs } from '../../src/core/driver/debugfs';
import { IommuKernel } from '../../src/core/driver/kernel';
import { Machine } from '../../src/core/hw/machine';
import { vtdUnits } from '../../src/core/vtd/factory';

export function fixtureKernel(): IommuKernel {
  const m = new Machine();
  m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xaa3f_c000, features: { supervisorRequests: true } });
  m.addEndpoint('00:02.0', {}, 'dmar0');
  m.addEndpoint('6a:01.0', { ats: {}, pri: {}, pasid: { width: 20 } }, 'dmar0');
  const k = new IommuKernel(m).boot();
  k.map(k.device('00:02.0').ridDomain!, 0x10_0000, 0x8000_0000, 0x1_0000, { read: true, write: true });
  k.map(k.device('6a:01.0').ridDomain!, 0x20_0000, 0x9000_0000, 0x1000, { read: true, write: false });
  const second = k.allocPagingDomain({ stage: 'second', name: 'pasid5' });
  k.attachDevicePasid(second, '6a:01.0', 5);
  k.map(second, 0x4000_0000, 0x1_2340_0000, 0x1000, { read: true, write: true });
  return k;
}

/** The files as they are checked in (an empty file gets a newline, as git keeps it). */
export function fixtureFiles(): Map<string, string> {
  const files = renderDebugfs(kernelDebugfsView(fixtureKernel()));
  return new Map([...files].map(([path, text]) => [path, text.endsWith('\n') ? text : text + '\n']));
}

function main(): void {
  const out = join(process.cwd(), 'test/fixtures/workspace/debugfs-dump');
  rmSync(out, { recursive: true, force: true });
  const files = fixtureFiles();
  for (const [path, text] of files) {
    mkdirSync(dirname(join(out, path)), { recursive: true });
    writeFileSync(join(out, path), text);
  }
  console.log(`wrote ${files.size} files to ${out}`);
}

// Run as a script (bundled and piped to `node - --write`), not when a test imports fixtureFiles.
if (process.argv.includes('--write')) main();
