import type { DeviceInfo } from './device';
import type { Attachment, Domain } from './domain';

/**
 * The per-device attachment tree, drawn the way Kevin Tian's mail draws it (seed 001):
 *
 *   RID1 --- domain1 (default, IOVA)
 *        |      |
 *        |      |-- [RID1]
 *        |
 *        |-- domain2 (vm1, GPA)
 *        |      |
 *        |      |-- [RID1, PASID-x]
 *        |      |-- [RID1, PASID-a] // nested for vm1 process1
 *
 * Every domain the device is attached to (by RID or by any PASID) appears once, with all its attachments,
 * grouped by device (the device itself first). Nested domains are drawn under their parent: binding a user
 * table to a PASID is a new reference to the parent's I/O page table.
 */
export function attachmentTree(dev: DeviceInfo, domains: readonly Domain[], pasidLabel: (pasid: number) => string = (p) => `PASID 0x${p.toString(16)}`): string {
  const shown = (d: Domain): Domain => (d.type === 'nested' && d.parent ? d.parent : d);
  const relevant = new Set<Domain>();
  for (const d of domains) if (d.attachments.some((a) => a.device === dev)) relevant.add(shown(d));
  const order = [...relevant].sort((a, b) => (a === dev.ridDomain ? -1 : b === dev.ridDomain ? 1 : a.id - b.id));
  if (order.length === 0) return `${dev.label} --- (no domain)`;
  const pad = ' '.repeat(dev.label.length + 1);
  const lines: string[] = [];
  order.forEach((domain, i) => {
    const title = `${domain.name}${domain.description ? ` (${domain.description})` : ''}`;
    if (i === 0) lines.push(`${dev.label} --- ${title}`);
    else lines.push(`${pad}|`, `${pad}|-- ${title}`);
    // This domain's attachments and those of nested domains built on it, in attach order.
    const all: Attachment[] = [...domain.attachments];
    for (const child of domains) if (child.parent === domain) all.push(...child.attachments);
    const devices = [...new Set(all.map((a) => a.device))].sort((a, b) => (a === dev ? -1 : b === dev ? 1 : a.key - b.key));
    for (const d of devices) {
      lines.push(`${pad}|      |`);
      const mine = all.filter((a) => a.device === d).sort((a, b) => (a.pasid === undefined ? -1 : b.pasid === undefined ? 1 : 0));
      for (const a of mine) {
        const label = a.pasid === undefined ? `[${d.label}]` : `[${d.label}, ${pasidLabel(a.pasid)}]`;
        lines.push(`${pad}|      |-- ${label}${a.note ? ` // ${a.note}` : ''}`);
      }
    }
  });
  return lines.join('\n');
}
