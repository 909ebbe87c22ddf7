// A guest's first-level page table for nested tests: built in guest-physical space, its table pages mapped
// 1:1 in the nest parent so that the nested walk can read them through the second level.
import type { Domain } from '../../src/core/driver/domain';
import type { IommuKernel } from '../../src/core/driver/kernel';
import { IoPageTable } from '../../src/core/vtd/page-table';

export function guestTable(k: IommuKernel, parent: Domain, maps: [gva: number, gpa: number][]): IoPageTable {
  const pages: number[] = [];
  const t = new IoPageTable(k.machine.memory, { format: 'first-level', levels: 4, allocPage: () => (pages.push(k.machine.memory.allocPage()), pages.at(-1)!) });
  for (const [gva, gpa] of maps) t.map(gva, gpa, 4096, { read: true, write: true, user: true });
  for (const p of pages) k.map(parent, p, p, 4096, { read: true, write: true });
  return t;
}
