import { fail } from '../driver/errors';

/**
 * The object table of one iommufd context (the kernel's `ictx->objects` xarray): ids from 1, the lowest
 * free one first, typed lookups that answer ENOENT for a missing id, a wrong type or a tombstone, and a
 * user count per object that decides whether IOMMU_DESTROY may remove it.
 */

export type ObjectType = 'IOAS' | 'DEVICE' | 'HWPT_PAGING' | 'HWPT_NESTED' | 'FAULT' | 'VIOMMU' | 'VDEVICE' | 'ACCESS';

export interface IommufdObject {
  readonly type: ObjectType;
  /** 0 until the table assigns it. */
  id: number;
  /**
   * `obj->users`: 1 for the table's own reference plus one per object, attachment or file that depends on
   * this one. DESTROY removes an object only when it is 1.
   */
  users: number;
}

const TOMBSTONE = 'tombstone';

export class ObjectTable {
  private readonly slots = new Map<number, IommufdObject | typeof TOMBSTONE>();

  /** xa_alloc: the lowest id not in use (tombstones stay in use). */
  add<T extends IommufdObject>(obj: T): T {
    let id = 1;
    while (this.slots.has(id)) id++;
    obj.id = id;
    this.slots.set(id, obj);
    return obj;
  }

  /** iommufd_get_object: ENOENT unless `id` names a live object of the given type (any type if none given). */
  get(id: number, type?: ObjectType | readonly ObjectType[]): IommufdObject {
    const obj = this.slots.get(id);
    const types = type === undefined ? undefined : typeof type === 'string' ? [type] : type;
    if (obj === undefined || obj === TOMBSTONE) return fail('ENOENT', id === 0 ? 'object id 0 never names an object' : `no object with id ${id}`);
    if (types && !types.includes(obj.type)) return fail('ENOENT', `object ${id} is a ${obj.type}, not a ${types.join(' or ')}`);
    return obj;
  }

  find(id: number): IommufdObject | undefined {
    const obj = this.slots.get(id);
    return obj === TOMBSTONE ? undefined : obj;
  }

  remove(obj: IommufdObject): void {
    if (this.slots.get(obj.id) === obj) this.slots.delete(obj.id);
  }

  /** Removes the object but keeps its id allocated, so a later lookup or DESTROY of it gives ENOENT. */
  tombstone(obj: IommufdObject): void {
    if (this.slots.get(obj.id) === obj) this.slots.set(obj.id, TOMBSTONE);
  }

  isTombstone(id: number): boolean {
    return this.slots.get(id) === TOMBSTONE;
  }

  /** Live objects in id order. */
  values(): IommufdObject[] {
    return [...this.slots.entries()]
      .filter((e): e is [number, IommufdObject] => e[1] !== TOMBSTONE)
      .sort((a, b) => a[0] - b[0])
      .map((e) => e[1]);
  }

  get size(): number {
    return this.values().length;
  }

  clear(): void {
    this.slots.clear();
  }
}
