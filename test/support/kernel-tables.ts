// The kernel's own fault-reason tables, read from the verbatim copies of dmar.c's arrays in
// test/fixtures/kernel/, and its lookup (dmar_get_fault_reason) written out from the source: the tests
// compare the model against these, never against the model's own function.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export type KernelFaultType = 'dma' | 'interrupt-remap' | 'unknown';

/** The C string literals of one `static const char ... name[] = { ... };` array of a fixture. */
function array(source: string, name: string): string[] | undefined {
  const start = source.indexOf(`${name}[]`);
  if (start === -1) return undefined;
  const body = source.slice(source.indexOf('{', start) + 1, source.indexOf('};', start));
  return [...body.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
}

/**
 * Every code 0-255 with the string and type the kernel of `fixture` (e.g. `fault-reasons-6.12.txt`) gives it:
 * irq_remap_fault_reasons from 0x20, then dma_remap_sm_fault_reasons from 0x30 (if the kernel has it), then
 * dma_remap_fault_reasons from 0, else "Unknown".
 */
export function kernelFaultReasons(root: string, fixture: string): Map<number, { text: string; type: KernelFaultType }> {
  const source = readFileSync(join(root, 'test/fixtures/kernel', fixture), 'utf8');
  const dma = array(source, 'dma_remap_fault_reasons')!;
  const irq = array(source, 'irq_remap_fault_reasons')!;
  const sm = array(source, 'dma_remap_sm_fault_reasons');
  const out = new Map<number, { text: string; type: KernelFaultType }>();
  for (let code = 0; code < 256; code++) {
    if (code >= 0x20 && code - 0x20 < irq.length) out.set(code, { text: irq[code - 0x20]!, type: 'interrupt-remap' });
    else if (sm && code >= 0x30 && code - 0x30 < sm.length) out.set(code, { text: sm[code - 0x30]!, type: 'dma' });
    else if (code < dma.length) out.set(code, { text: dma[code]!, type: 'dma' });
    else out.set(code, { text: 'Unknown', type: 'unknown' });
  }
  return out;
}
