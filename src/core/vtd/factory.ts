import type { IommuUnit, IommuUnitFactory } from '../hw/types';
import { VtdUnit, type VtdUnitConfig } from './unit';

/** Makes VT-d units for a machine: `machine.addUnit(vtdUnits, { name: 'dmar0', ... })`. */
export const vtdUnits: IommuUnitFactory<VtdUnitConfig, VtdUnit> = {
  vendor: 'intel',
  create: (memory, events, config) => new VtdUnit(memory, events, config),
};

/** A VT-d unit of a machine by name (the driver model programs VT-d registers directly); throws if it is another vendor's. */
export function vtdUnitOf(machine: { unit(name: string): IommuUnit }, name: string): VtdUnit {
  const u = machine.unit(name);
  if (!(u instanceof VtdUnit)) throw new Error(`${name} is not a VT-d unit`);
  return u;
}
