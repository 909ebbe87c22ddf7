import { formatPciAddress, pciFromRid } from '../core/pci';
import { agree, plural } from '../core/plural';
import { U64 } from '../core/u64';
import { contextEntryAddress, pasidDirEntryAddress, pasidEntryAddress, rootEntryAddress } from '../core/vtd/tables';
import type { DebugfsInput, Location, TranslationDump } from './debugfs';
import type { ImportedDevice } from './debugfs-import';
import { type PasidDirEntryFact, readPasidDirectories } from './debugfs-dmesg';
import { addrOf, TWO_32 } from './debugfs-import-state';
import { UnitImport } from './debugfs-import-units';

// The second phase of the import: root, context and PASID tables from dmar_translation_struct, with the PASID
// directory entries a kernel log gives.

export class TableImport extends UnitImport {
  // ---- the kernel log ----

  protected readLog(log: DebugfsInput): void {
    const { facts, diagnostics } = readPasidDirectories(log);
    this.diagnostics.push(...diagnostics);
    // The last dump of an entry is the newest: later faults see the tables as they are now.
    for (const f of facts) this.dirFacts.set(`${f.unit}|${f.sid}|${f.pasid >>> 6}`, f);
  }

  // ---- root, context and PASID tables ----

  protected device(segment: number, sid: number, unit: string): ImportedDevice {
    const name = formatPciAddress(pciFromRid(sid, segment));
    let d = this.devices.get(name);
    if (!d) {
      d = { device: name, segment, sid, unit, pasidFiles: [], ridFile: false };
      this.devices.set(name, d);
    }
    return d;
  }

  protected loadTranslation(t: TranslationDump): void {
    const unit = this.unitNamed(t.unit);
    const sm = t.rows.some((r) => r.pasid >= 0) || unit.scalableMode;
    for (const r of t.rows) {
      this.at = r.at;
      const sid = (r.bus << 8) | r.devfn;
      const dev = this.device(unit.segment, sid, t.unit);
      if (dev.unit !== t.unit) {
        this.note('warning', r.at, `${dev.device} is in the tables of ${dev.unit} and of ${t.unit}; no device file says which segments they serve, so both are taken as segment ${unit.segment} and the device is left to ${dev.unit}`);
      }
      const rootAt = rootEntryAddress(t.rootTable, r.bus);
      this.put(rootAt, r.root[1], r.at, 'root entry qw0');
      this.put(rootAt + 8, r.root[0], r.at, 'root entry qw1');
      const half = sm && r.devfn >= 0x80 ? r.root[0] : r.root[1];
      if ((half.lo & 1) === 0) {
        this.note('warning', r.at, `the root entry for bus ${r.bus.toString(16).padStart(2, '0')} is not present, yet the kernel printed a context entry under it`);
        continue;
      }
      const ctxAt = contextEntryAddress(addrOf(half), r.devfn, sm);
      this.put(ctxAt, r.context[1], r.at, 'context entry qw0');
      this.put(ctxAt + 8, r.context[0], r.at, 'context entry qw1');
      if (!r.pasidEntry) continue;
      const table = this.pasidTable(t.unit, dev, r);
      if (table === undefined) continue;
      const entryAt = pasidEntryAddress(table, r.pasid);
      r.pasidEntry.forEach((w, i) => this.put(entryAt + i * 8, w, r.at, `PASID ${r.pasid} entry qw${i}`));
      this.checkFirstLevelWidth(r.pasidEntry, r.pasid, dev.device, r.at);
    }
  }

  /**
   * The PASID table holding a row's entry. debugfs never prints the PASID directory: its entry comes from the
   * kernel log when a walk dump there printed it, else the import gives the table a page of its own.
   */
  private pasidTable(unitName: string, dev: ImportedDevice, r: TranslationDump['rows'][number]): number | undefined {
    const mem = this.machine.memory;
    const dir = addrOf(r.context[1]);
    const dirEntry = pasidDirEntryAddress(dir, r.pasid);
    const dirIndex = r.pasid >>> 6;
    if (mem.readLo(dirEntry) & 1) return addrOf(new U64(mem.readHi(dirEntry), mem.readLo(dirEntry)));
    const fact = this.dirFacts.get(`${unitName}|${dev.sid}|${dirIndex}`);
    if (fact && this.factFits(fact, r, dirEntry, dev.device)) {
      this.usedFacts.add(fact);
      this.put(dirEntry, fact.value, fact.at, 'PASID directory entry');
      const table = addrOf(fact.value);
      this.placements.push({ unit: unitName, device: dev.device, dirIndex, dirEntryAddress: dirEntry, table, from: fact.at });
      return table;
    }
    if (this.roomForTables === 0) {
      this.note('error', r.at, `no free memory left to place the PASID table of ${dev.device} PASID ${r.pasid}: the entry is not loaded`);
      return undefined;
    }
    this.roomForTables--;
    const table = mem.allocPage();
    mem.write64(dirEntry, Math.floor(table / TWO_32), (table >>> 0) | 1, 'debugfs pasid-dir-entry (placed by the import)');
    this.placements.push({ unit: unitName, device: dev.device, dirIndex, dirEntryAddress: dirEntry, table, from: undefined });
    return table;
  }

  /** Whether a log's directory entry belongs to the directory the dump shows (the log may be older than the dump). */
  private factFits(fact: PasidDirEntryFact, r: TranslationDump['rows'][number], dirEntry: number, device: string): boolean {
    const where = `${fact.at.file}:${fact.at.line}`;
    if (fact.contextLo && addrOf(fact.contextLo) !== addrOf(r.context[1])) {
      this.note('warning', fact.at, `the table dump at ${where} shows ${device}'s PASID directory at 0x${addrOf(fact.contextLo).toString(16)}, the debugfs dump at 0x${addrOf(r.context[1]).toString(16)} (${r.at.file}:${r.at.line}): the log is from another time, its PASID directory entry is not used`);
      return false;
    }
    if (fact.address !== undefined && fact.address !== dirEntry) {
      this.note('warning', fact.at, `the table dump at ${where} puts ${device}'s PASID directory entry at 0x${fact.address.toString(16)}, the context entry (${r.at.file}:${r.at.line}) at 0x${dirEntry.toString(16)}: not used`);
      return false;
    }
    if ((fact.value.lo & 1) === 0) {
      this.note('warning', fact.at, `the table dump at ${where} shows ${device}'s PASID directory entry not present, yet debugfs lists PASID ${r.pasid} (${r.at.file}:${r.at.line}): the log is older than the dump, its entry is not used`);
      return false;
    }
    return true;
  }

  /** Says where PASID tables went: from the log, or placed, since debugfs shows neither. */
  protected reportPlacements(): void {
    const placed = this.placements.filter((p) => p.from === undefined);
    const fromLog = this.placements.length - placed.length;
    const at = this.dump.translations[0]?.at ?? { file: '', line: 0 };
    if (placed.length > 0) {
      const hint = this.options.dmesg ? ' (the kernel log has no walk dump for them)' : '; a dmesg with CONFIG_DMAR_DEBUG table dumps of these devices gives the real ones';
      this.note('info', at, `debugfs shows PASID entries but not the tables that hold them: ${plural(placed.length, 'PASID table')} ${agree(placed.length, 'was', 'were')} placed at 0x${placed[0]!.table.toString(16)} and up${hint}; the entries are as dumped`);
    }
    if (fromLog > 0) this.note('info', at, `${plural(fromLog, 'PASID table')} ${agree(fromLog, 'is', 'are')} at the address the kernel log's PASID directory entries give`);
    const unused = [...this.dirFacts.values()].filter((f) => !this.usedFacts.has(f));
    for (const f of unused) {
      this.note('info', f.at, `the PASID directory entry printed here (${f.unit} RID 0x${f.sid.toString(16)}, PASIDs 0x${((f.pasid >>> 6) * 64).toString(16)}-0x${((f.pasid >>> 6) * 64 + 63).toString(16)}) belongs to no PASID entry of the dump`);
    }
  }

  /**
   * debugfs walks every table AW + 2 levels deep, but a first-level table has the depth FLPM gives; Linux
   * writes the IOMMU's AW into first-level entries too, so where the two differ the kernel's dump of that
   * table is not the table, and walks through the import will not find its mappings.
   */
  private checkFirstLevelWidth(entry: readonly U64[], pasid: number, device: string, at: Location): void {
    const [val0, , val2] = entry;
    if (((val0!.lo >>> 6) & 7) !== 1) return;
    const aw = (val0!.lo >>> 2) & 7;
    const levels = ((val2!.lo >>> 2) & 3) === 1 ? 5 : 4;
    if (aw + 2 === levels) return;
    this.note('info', at, `${device} PASID ${pasid}: a ${levels}-level first-level table with AW ${aw}: the kernel dumps it as ${aw + 2} levels, so its domain_translation_struct does not show its mappings`);
  }
}
