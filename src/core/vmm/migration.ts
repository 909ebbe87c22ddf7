import type { Host } from './host';
import type { Vm } from './vm';
import { VmError } from './vm';

/**
 * Live migration of a VM to another host. What is the guest's moves unchanged: its RAM (and with it its
 * page tables, PASID tables and queues, which live there), the vIOMMU's registers and caches, the guest
 * kernel. What is the host's is rebuilt from the guest's tables on the destination: the GPA domain,
 * shadows, nested binds, host PASIDs and the G-to-H and H-to-G tables; the source host is left with
 * nothing of the VM. A configuration whose guest uses host-allocated PASIDs cannot move: those values mean
 * nothing on another host (seed 003).
 */

export interface MigrationOptions {
  /** Source device name -> destination device name, for devices that sit elsewhere on the destination. */
  readonly devices?: Readonly<Record<string, string>>;
}

export interface MigrationReport {
  readonly from: string;
  readonly to: string;
  readonly pagesCopied: number;
  readonly devices: readonly { readonly guest: string; readonly from: string; readonly to: string }[];
  /** Each host PASID on the source and the one that replaced it on the destination. */
  readonly hostPasids: readonly { readonly from: number; readonly to: number }[];
}

export function migrate(vm: Vm, dest: Host, options: MigrationOptions = {}): MigrationReport {
  if (dest === vm.host) throw new VmError(`${vm.name} already runs on ${dest.name}`);
  const refusal = vm.migrationBlocker();
  if (refusal) throw new VmError(refusal);
  // Resolve the destination devices first: a missing one refuses the migration before anything moves.
  const moves = vm.devices.map((d) => {
    const to = options.devices?.[d.host.name] ?? d.host.name;
    try {
      return { d, dev: dest.kernel.device(to) };
    } catch {
      throw new VmError(`${dest.name} has no device ${to} for ${vm.name}'s ${d.host.name}`);
    }
  });
  const from = vm.host;
  vm.vmm?.teardown({ keepGuestPasids: true });
  if (!vm.vmm) vm.teardownWithoutVmm();
  const pagesCopied = vm.memory.rebase(dest.machine.memory, dest.reserveRam(vm.memory.size));
  vm.moveTo(dest);
  const devices = moves.map(({ d, dev }) => {
    const rec = { guest: vm.deviceName(d), from: d.host.name, to: dev.name };
    // A mediated device's mark is the parent driver's PASID: given back on the source, allocated anew there.
    if (d.kind === 'mdev') {
      from.kernel.pasids.freeDevice(d.host, d.hostPasid!);
      d.hostPasid = dest.kernel.pasids.allocDevice(dev);
    }
    d.host = dev;
    return rec;
  });
  const remap = vm.movePasids(dest);
  vm.log.add({ vm: vm.name, side: 'vmm', action: 'migrate', detail: `${vm.name} from ${from.name} to ${dest.name}: ${pagesCopied} guest page${pagesCopied === 1 ? '' : 's'} copied` });
  if (vm.vmm) vm.vmm.rebuild();
  else vm.rebuildWithoutVmm();
  vm.reprogramWorkQueues();
  // Nothing of the VM may stay on the source: its domains, and the host PASIDs it had there.
  for (const d of from.kernel.domains) {
    if (!d.freed && d.name.startsWith(`${vm.name}-`)) vm.note({ code: 'leftover', vm: vm.name, message: `${d.name} is still allocated on ${from.name} after the migration` });
  }
  for (const [old] of remap) {
    if (vm.pasids.policy === 'non-identity' && from.kernel.pasids.global.has(old)) vm.note({ code: 'leftover', vm: vm.name, hostPasid: old, message: `host PASID ${old} is still allocated on ${from.name} after the migration` });
  }
  return { from: from.name, to: dest.name, pagesCopied, devices, hostPasids: [...remap].map(([a, b]) => ({ from: a, to: b })) };
}
