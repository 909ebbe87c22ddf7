import { formatPciAddress, pciFromRid } from '../core/pci';
import type { U64 } from '../core/u64';
import type { DomainDump } from './debugfs';
import { addrOf } from './debugfs-import-state';
import { TableImport } from './debugfs-import-tables';

// The third phase of the import: the page tables of domain_translation_struct, written a few thousand rows a step.

const ROWS_PER_STEP = 4096;
const PER_PASID_FILE = /(?:^|[\\/])(?:[0-9a-f]{4,5}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7][\\/][0-9a-f]{1,5}[\\/]domain_translation_struct$/i;

export class PageTableImport extends TableImport {
  // ---- page tables ----

  private unitForDevice(segment: number, sid: number): string | undefined {
    for (const d of this.devices.values()) if (d.segment === segment && d.sid === sid) return d.unit;
    for (const [name, u] of this.units) if (u.unit.segment === segment) return name;
    return undefined;
  }

  protected *loadDomain(d: DomainDump): Generator<void> {
    this.at = d.at;
    const unitName = this.unitForDevice(d.segment, d.sid);
    if (unitName === undefined) {
      this.note('warning', d.at, `no unit of the dump serves PCI segment ${d.segment} (the tables name no device of it): ${formatPciAddress(pciFromRid(d.sid, d.segment))}'s page table is not loaded`);
      return;
    }
    const dev = this.device(d.segment, d.sid, unitName);
    // A 6.7+ per-PASID file: <device>/<PASID in hex>/domain_translation_struct (whatever folder holds the dump).
    const perPasid = PER_PASID_FILE.test(d.at.file);
    if (d.pasid === undefined || !perPasid) dev.ridFile = true;
    if (d.pasid !== undefined && perPasid) dev.pasidFiles.push(d.pasid);
    const tables = this.dump.translations.find((t) => t.unit === unitName);
    if (!tables) {
      // Not a contradiction: the dump lacks the file that holds the root and context tables.
      const why = this.dump.disabled.some((x) => x.unit === unitName)
        ? `dmar_translation_struct says DMA remapping is not enabled on ${unitName}`
        : `the dump has no dmar_translation_struct for ${unitName} (its root and context tables)`;
      this.note('info', d.at, `${why}: ${dev.device}'s page tables here are loaded, but no context entry of the dump leads a request to them`);
    } else if (!tables.rows.some((r) => ((r.bus << 8) | r.devfn) === d.sid)) {
      // dmar_translation_struct stops a bus at the first context-table half that is missing, so in scalable
      // mode devices 80-ff of a bus with no device 00-7f never appear there, though their tables exist.
      const why = (d.sid & 0x80) !== 0 && d.pasid !== undefined ? ' (the kernel does not list devices 80-ff of a bus whose devices 00-7f have no context table)' : '';
      this.note('warning', d.at, `${dev.device} has page tables here but no context entry in dmar_translation_struct${why}: the tables are loaded, but no request reaches them`);
    }
    // Consecutive rows share their upper entries; each entry is written (and checked) once per run.
    const lastAddr = [0, -1, -1, -1, -1, -1];
    const lastValue: (U64 | undefined)[] = [];
    let n = 0;
    for (const row of d.rows) {
      if (++n % ROWS_PER_STEP === 0) yield;
      this.at = row.at;
      let top = 5;
      while (top > 0 && row.path[top] === undefined) top--;
      if (top === 0) continue;
      let table = d.pgd;
      const iova = row.pfn * 4096;
      for (let level = top; level >= 1; level--) {
        const v = row.path[level];
        if (v === undefined) break;
        const at = table + (Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512) * 8;
        const prev = lastValue[level];
        if (lastAddr[level] !== at || !prev || prev.hi !== v.hi || prev.lo !== v.lo) {
          this.put(at, v, row.at, () => `level-${level} entry for IOVA 0x${iova.toString(16)}`);
          lastAddr[level] = at;
          lastValue[level] = v;
        }
        table = addrOf(v);
      }
    }
  }
}
