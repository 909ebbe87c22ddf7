/**
 * The iommufd uAPI structures as field layouts (include/uapi/linux/iommufd.h, written from the header's
 * declarations): each struct is its members in order with their C types, and the offsets and sizes follow
 * from the x86-64 C layout rules (a member sits at the next multiple of its alignment, the struct's size
 * is rounded up to its largest alignment), so no size or offset is written by hand. The ioctl entry point
 * reads and writes fields by these names, and the sizes userspace states (`data_len`, `entry_len`, read()
 * and write() counts) come from here too.
 */

/** C member types of the header: `__u8`, `__u16`, `__u32`, `__s32`, `__aligned_u64`. */
export type CType = 'u8' | 'u16' | 'u32' | 's32' | 'u64';

const WIDTH: Record<CType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 };

/** A member: `name: type`, `name: type[n]`, or an anonymous union of members (all at one offset). */
type Member = readonly [name: string, type: CType, count?: number] | { readonly union: readonly (readonly [string, CType])[] };

export interface FieldLayout {
  readonly name: string;
  readonly type: CType;
  readonly offset: number;
  /** Bytes, arrays included. */
  readonly size: number;
}

export interface StructLayout {
  readonly name: string;
  readonly size: number;
  readonly fields: ReadonlyMap<string, FieldLayout>;
  /** `offsetofend(struct, member)`. */
  offsetofend(member: string): number;
  field(member: string): FieldLayout;
}

function layout(name: string, members: readonly Member[]): StructLayout {
  const fields = new Map<string, FieldLayout>();
  let at = 0;
  let align = 1;
  const place = (m: string, type: CType, count: number, offset: number) => {
    if (fields.has(m)) throw new Error(`${name}: member ${m} twice`);
    fields.set(m, { name: m, type, offset, size: WIDTH[type] * count });
  };
  for (const member of members) {
    const group = 'union' in member ? member.union.map(([n, t]) => [n, t, 1] as const) : [[member[0], member[1], member[2] ?? 1] as const];
    const a = Math.max(...group.map(([, t]) => WIDTH[t]));
    align = Math.max(align, a);
    at = Math.ceil(at / a) * a;
    for (const [n, t, count] of group) place(n, t, count, at);
    at += Math.max(...group.map(([, t, count]) => WIDTH[t] * count));
  }
  const size = Math.ceil(at / align) * align;
  const field = (m: string): FieldLayout => fields.get(m) ?? (() => { throw new Error(`struct ${name} has no member ${m}`); })();
  return { name, size, fields, field, offsetofend: (m) => field(m).offset + field(m).size };
}

const u32 = (n: string) => [n, 'u32'] as const;
const u64 = (n: string) => [n, 'u64'] as const;

/** Every struct of the uAPI the model reads or writes, by its C name. */
export const UAPI_STRUCTS = {
  iommu_destroy: layout('iommu_destroy', [u32('size'), u32('id')]),
  iommu_ioas_alloc: layout('iommu_ioas_alloc', [u32('size'), u32('flags'), u32('out_ioas_id')]),
  iommu_iova_range: layout('iommu_iova_range', [u64('start'), u64('last')]),
  iommu_ioas_iova_ranges: layout('iommu_ioas_iova_ranges', [u32('size'), u32('ioas_id'), u32('num_iovas'), u32('__reserved'), u64('allowed_iovas'), u64('out_iova_alignment')]),
  iommu_ioas_allow_iovas: layout('iommu_ioas_allow_iovas', [u32('size'), u32('ioas_id'), u32('num_iovas'), u32('__reserved'), u64('allowed_iovas')]),
  iommu_ioas_map: layout('iommu_ioas_map', [u32('size'), u32('flags'), u32('ioas_id'), u32('__reserved'), u64('user_va'), u64('length'), u64('iova')]),
  iommu_ioas_map_file: layout('iommu_ioas_map_file', [u32('size'), u32('flags'), u32('ioas_id'), ['fd', 's32'], u64('start'), u64('length'), u64('iova')]),
  iommu_ioas_copy: layout('iommu_ioas_copy', [u32('size'), u32('flags'), u32('dst_ioas_id'), u32('src_ioas_id'), u64('length'), u64('dst_iova'), u64('src_iova')]),
  iommu_ioas_unmap: layout('iommu_ioas_unmap', [u32('size'), u32('ioas_id'), u64('iova'), u64('length')]),
  iommu_option: layout('iommu_option', [u32('size'), u32('option_id'), ['op', 'u16'], ['__reserved', 'u16'], u32('object_id'), u64('val64')]),
  iommu_vfio_ioas: layout('iommu_vfio_ioas', [u32('size'), u32('ioas_id'), ['op', 'u16'], ['__reserved', 'u16']]),
  iommu_hwpt_vtd_s1: layout('iommu_hwpt_vtd_s1', [u64('flags'), u64('pgtbl_addr'), u32('addr_width'), u32('__reserved')]),
  iommu_hwpt_alloc: layout('iommu_hwpt_alloc', [
    u32('size'), u32('flags'), u32('dev_id'), u32('pt_id'), u32('out_hwpt_id'), u32('__reserved'), u32('data_type'), u32('data_len'), u64('data_uptr'), u32('fault_id'), u32('__reserved2'),
  ]),
  iommu_hw_info_vtd: layout('iommu_hw_info_vtd', [u32('flags'), u32('__reserved'), u64('cap_reg'), u64('ecap_reg')]),
  iommu_hw_info: layout('iommu_hw_info', [
    u32('size'), u32('flags'), u32('dev_id'), u32('data_len'), u64('data_uptr'), { union: [u32('in_data_type'), u32('out_data_type')] }, ['out_max_pasid_log2', 'u8'], ['__reserved', 'u8', 3], u64('out_capabilities'),
  ]),
  iommu_hwpt_set_dirty_tracking: layout('iommu_hwpt_set_dirty_tracking', [u32('size'), u32('flags'), u32('hwpt_id'), u32('__reserved')]),
  iommu_hwpt_get_dirty_bitmap: layout('iommu_hwpt_get_dirty_bitmap', [u32('size'), u32('hwpt_id'), u32('flags'), u32('__reserved'), u64('iova'), u64('length'), u64('page_size'), u64('data')]),
  iommu_hwpt_vtd_s1_invalidate: layout('iommu_hwpt_vtd_s1_invalidate', [u64('addr'), u64('npages'), u32('flags'), u32('__reserved')]),
  iommu_hwpt_invalidate: layout('iommu_hwpt_invalidate', [u32('size'), u32('hwpt_id'), u64('data_uptr'), u32('data_type'), u32('entry_len'), u32('entry_num'), u32('__reserved')]),
  iommu_hwpt_pgfault: layout('iommu_hwpt_pgfault', [u32('flags'), u32('dev_id'), u32('pasid'), u32('grpid'), u32('perm'), u32('__reserved'), u64('addr'), u32('length'), u32('cookie')]),
  iommu_hwpt_page_response: layout('iommu_hwpt_page_response', [u32('cookie'), u32('code')]),
  iommu_fault_alloc: layout('iommu_fault_alloc', [u32('size'), u32('flags'), u32('out_fault_id'), u32('out_fault_fd')]),
  iommu_viommu_alloc: layout('iommu_viommu_alloc', [u32('size'), u32('flags'), u32('type'), u32('dev_id'), u32('hwpt_id'), u32('out_viommu_id'), u32('data_len'), u32('__reserved'), u64('data_uptr')]),
  iommu_vdevice_alloc: layout('iommu_vdevice_alloc', [u32('size'), u32('viommu_id'), u32('dev_id'), u32('out_vdevice_id'), u64('virt_id')]),
  iommu_ioas_change_process: layout('iommu_ioas_change_process', [u32('size'), u32('__reserved')]),
  iommu_veventq_alloc: layout('iommu_veventq_alloc', [u32('size'), u32('flags'), u32('viommu_id'), u32('type'), u32('veventq_depth'), u32('out_veventq_id'), u32('out_veventq_fd'), u32('__reserved')]),
  iommu_hw_queue_alloc: layout('iommu_hw_queue_alloc', [u32('size'), u32('flags'), u32('viommu_id'), u32('type'), u32('index'), u32('out_hw_queue_id'), u64('nesting_parent_iova'), u64('length')]),
} as const;

export type UapiStructName = keyof typeof UAPI_STRUCTS;
