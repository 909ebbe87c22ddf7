import { isRegister64 } from '../core/driver/debugfs';
import { U64 } from '../core/u64';
import { capabilitiesOf } from '../core/vtd/cap';
import { vtdUnits } from '../core/vtd/factory';
import { GSTS, Reg } from '../core/vtd/registers';
import type { VtdUnit } from '../core/vtd/unit';
import type { Location, QueueDump, TranslationDump } from './debugfs';
import { addrOf, ImportState, type UnitState } from './debugfs-import-state';

// The first phase of the import: the units, with their registers (or what the rest of the dump implies of them).

/** The page table a translation row points a device (and PASID) to, as debugfs's domain file would name it. */
function rowPageTable(r: TranslationDump['rows'][number], pasid: number | undefined): number | undefined {
  if (!r.pasidEntry) return r.pasid === -1 && (pasid === undefined || pasid === 0) ? addrOf(r.context[1]) : undefined;
  if (r.pasid !== (pasid ?? 0)) return undefined;
  const [val0, , val2] = r.pasidEntry;
  const pgtt = (val0.lo >>> 6) & 7;
  return pgtt === 1 ? addrOf(val2) : pgtt === 2 || pgtt === 3 ? addrOf(val0) : undefined;
}

export class UnitImport extends ImportState {
  // ---- units and registers ----

  private unitNames(): string[] {
    const names: string[] = [];
    const add = (n: string) => names.includes(n) || names.push(n);
    for (const r of this.dump.regsets) add(r.unit);
    for (const t of this.dump.translations) add(t.unit);
    for (const d of this.dump.disabled) add(d.unit);
    for (const q of this.dump.queues) add(q.unit);
    for (const i of this.dump.interrupts) add(i.unit);
    return names;
  }

  /**
   * Which PCI segment each unit serves. Only the device files name a segment (`Device 0001:00:02.0 @0x...`);
   * a unit serves the segment of the devices whose page table its context or PASID entries point to.
   */
  private unitSegments(names: readonly string[]): Map<string, number> {
    const segments = new Map<string, { segment: number; at: Location }>();
    for (const d of this.dump.domains) {
      const tables = this.dump.translations.filter((t) => names.includes(t.unit));
      const rowsFor = (t: TranslationDump) => t.rows.filter((r) => ((r.bus << 8) | r.devfn) === d.sid);
      let candidates = tables.filter((t) => rowsFor(t).some((r) => rowPageTable(r, d.pasid) === d.pgd)).map((t) => t.unit);
      if (candidates.length === 0) candidates = tables.filter((t) => rowsFor(t).length > 0).map((t) => t.unit);
      // Without dmar_translation_struct a lone unit serves what the device files name.
      if (candidates.length === 0 && tables.length === 0 && names.length === 1) candidates = [names[0]!];
      if (candidates.length !== 1) continue;
      const unit = candidates[0]!;
      const known = segments.get(unit);
      if (known && known.segment !== d.segment) {
        this.note('warning', d.at, `${unit} serves devices of PCI segment ${known.segment} (${known.at.file}:${known.at.line}) and, by this file, of segment ${d.segment}; a unit serves one segment, keeping ${known.segment}`);
        continue;
      }
      if (!known) segments.set(unit, { segment: d.segment, at: d.at });
    }
    return new Map([...segments].map(([u, s]) => [u, s.segment]));
  }

  protected createUnits(): void {
    const names = this.unitNames();
    // Only the device files name no unit: one unit serves them, under the name the kernel gives the first.
    const named = names.length > 0;
    if (!named && this.dump.domains.length > 0) names.push('dmar0');
    const segments = this.unitSegments(names);
    names.forEach((name, index) => {
      const regset = this.dump.regsets.find((r) => r.unit === name);
      const reg = (n: string) => regset?.registers.find((r) => r.name === n)?.value;
      const cap = reg('CAP');
      const ecap = reg('ECAP');
      const ver = reg('VER');
      const translation = this.dump.translations.find((t) => t.unit === name);
      const disabled = this.dump.disabled.some((d) => d.unit === name);
      const queue = this.dump.queues.find((q) => q.unit === name);
      const scalable = translation ? translation.rows.some((r) => r.pasid >= 0) || queue?.wide === true : queue?.wide ?? true;
      const known = cap !== undefined && ecap !== undefined;
      const at = regset?.at ?? translation?.at ?? this.dump.disabled.find((d) => d.unit === name)?.at ?? this.dump.domains[0]?.at ?? { file: '', line: 0 };
      this.at = at;
      const caps = `those of a ${scalable ? 'scalable-mode capable' : 'legacy'} unit with 4- and 5-level tables, 2M/1G pages and 20-bit PASIDs`;
      if (!regset) this.note('info', at, `the dump has no iommu_regset for ${name}: its CAP/ECAP are assumed, ${caps}`);
      else if (!known) this.note('info', at, `iommu_regset has no CAP/ECAP for ${name}: assuming ${caps}`);
      const { assumed, unknown } = this.unitFacts(name, { named, segment: segments.has(name), regset: regset !== undefined, reg, translation, disabled });
      // No device file names the unit's segment when it has none: segment 0, as on most machines.
      const segment = segments.get(name) ?? 0;
      const assumedCaps = capabilitiesOf({ scalableMode: scalable, agaws: [39, 48, 57], mgaw: 57, firstLevel5Level: true, interruptRemapping: this.dump.interrupts.some((i) => i.unit === name) });
      const unit = this.machine.addUnit(vtdUnits, {
        name,
        segment,
        regBase: regset?.base ?? 0xfed9_0000 + index * 0x1000,
        cap: cap ?? assumedCaps.cap,
        ecap: ecap ?? assumedCaps.ecap,
        version: ver ? [(ver.lo >>> 4) & 0xf, ver.lo & 0xf] : undefined,
      });
      const values: { offset: number; value: U64 }[] = [];
      if (regset) {
        for (const r of regset.registers) values.push({ offset: r.offset, value: isRegister64(r.name) ? r.value : new U64(0, r.value.lo) });
      } else {
        // What a dump without the regset still implies: the root table in use, translation on, the queue.
        let gsts = 0;
        if (translation) {
          values.push({ offset: Reg.RTADDR, value: U64.fromNumber(translation.rootTable + (scalable ? 1 << 10 : 0)) });
          gsts |= (1 << GSTS.RTPS) | (disabled ? 0 : 1 << GSTS.TES);
        }
        if (queue) {
          const shift = queue.wide ? 5 : 4;
          values.push({ offset: Reg.IQA, value: U64.fromNumber(queue.base + (queue.wide ? 0x801 : 0)) });
          values.push({ offset: Reg.IQH, value: U64.fromNumber((queue.head % 256) * 2 ** shift) });
          values.push({ offset: Reg.IQT, value: U64.fromNumber((queue.tail % 256) * 2 ** shift) });
          gsts |= 1 << GSTS.QIES;
        }
        const ir = this.dump.interrupts.find((i) => i.unit === name && i.table !== undefined);
        if (ir) {
          values.push({ offset: Reg.IRTA, value: U64.fromNumber(ir.table! + 15) });
          if (ir.kind === 'remapped') gsts |= (1 << GSTS.IRES) | (1 << GSTS.IRTPS);
        }
        values.push({ offset: Reg.GSTS, value: U64.fromNumber(gsts >>> 0) });
      }
      unit.loadRegisterFile(values);
      this.checkRegisters(unit, translation?.rootTable, translation?.at, queue);
      this.units.set(name, { unit, registersKnown: known, assumed, unknown });
    });
  }

  /**
   * Which of a unit's values the dump does not hold, and why: those the import assumes (the model runs with
   * them) and those nothing in the dump implies. A regset gives the register base, the version (VER), the
   * capabilities, the root table and mode (RTADDR) and whether translation is on (GSTS); without one,
   * dmar_translation_struct gives the root table, the mode (its PASID column: -1 in legacy mode) and that
   * translation is on (or, `DMA Remapping is not enabled`, off).
   */
  private unitFacts(
    name: string,
    d: { named: boolean; segment: boolean; regset: boolean; reg: (n: string) => U64 | undefined; translation: TranslationDump | undefined; disabled: boolean },
  ): { assumed: UnitState['assumed']; unknown: UnitState['unknown'] } {
    const assumed: UnitState['assumed'] = {};
    const unknown: UnitState['unknown'] = {};
    const noRegset = `the dump has no iommu_regset for ${name}`;
    if (!d.named) assumed.name = 'the dump names no unit';
    if (!d.segment) assumed.segment = `no device file of ${name} names its PCI segment`;
    if (!d.regset) assumed.regBase = noRegset;
    const missing = (['VER', 'CAP', 'ECAP'] as const).filter((r) => d.reg(r) === undefined);
    const noRegisters = d.regset ? `its iommu_regset has no ${missing.join(', ')}` : noRegset;
    for (const r of missing) assumed[r === 'VER' ? 'version' : r === 'CAP' ? 'cap' : 'ecap'] = noRegisters;
    const neither = d.disabled
      ? `dmar_translation_struct says DMA remapping is not enabled on ${name}, and the dump has no iommu_regset for it`
      : `the dump has neither iommu_regset nor dmar_translation_struct for ${name}`;
    if (d.reg('RTADDR') === undefined && !d.translation) {
      unknown.rootTable = neither;
      unknown.mode = neither;
    } else if (d.reg('RTADDR') === undefined && d.translation!.rows.length === 0) {
      unknown.mode = `dmar_translation_struct lists no entry of ${name} and the dump has no iommu_regset for it`;
    }
    if (d.reg('GSTS') === undefined && !d.translation && !d.disabled) unknown.translationEnabled = neither;
    return { assumed, unknown };
  }

  private checkRegisters(unit: VtdUnit, rootTable: number | undefined, at: Location | undefined, queue: QueueDump | undefined): void {
    if (rootTable !== undefined && unit.rootTableAddress !== rootTable) {
      this.note('warning', at!, `${unit.name}: RTADDR says the root table is at 0x${unit.rootTableAddress.toString(16)}, dmar_translation_struct says 0x${rootTable.toString(16)}; walks use RTADDR`);
    }
    if (queue) {
      const q = unit.invalidationQueue;
      if (q.base !== queue.base) this.note('warning', queue.at, `${unit.name}: IQA says the queue is at 0x${q.base.toString(16)}, invalidation_queue says 0x${queue.base.toString(16)}`);
    }
  }

  protected unitNamed(name: string): VtdUnit {
    return this.units.get(name)!.unit;
  }
}
