import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { PasidAllocator, type PasidCapable } from '../../src/core/driver/pasid-alloc';
import { CpuPasidTable } from '../../src/core/vmm/cpu-pasid';
import { PasidMap, type HostPasidAllocator } from '../../src/core/vmm/pasid-map';
import { PasidSplit } from '../../src/core/vmm/pasid-split';
import { throwsErrno } from '../support/kernel-platform';

const FULL = 2 ** 20;
const dsa0: PasidCapable = { name: 'dsa0', maxPasids: FULL };
const dsa1: PasidCapable = { name: 'dsa1', maxPasids: FULL };
const narrow: PasidCapable = { name: 'narrow', maxPasids: 8 };

/** A host whose own SVA users already hold global PASIDs 1 and 2, so guest and host PASIDs differ. */
function busyHost(): PasidAllocator {
  const a = new PasidAllocator();
  a.allocGlobal(dsa0);
  a.allocGlobal(dsa0);
  return a;
}

describe('vmm: the guest/host PASID table', () => {
  it("follows seed 000's non-identity flow with the fast lookups on the sides the seed gives them", () => {
    const host = busyHost();
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0, dsa1] });
    // 2. vcmd: QEMU returns a guest PASID and allocates the host PASID. iommu_alloc_global_pasid hands out
    //    the lowest free ID of ida_alloc_range(1, max_pasids - 1): 1 and 2 are the host's, so 3.
    assert.deepEqual(map.allocGuest(), { guest: 1, host: 3 });
    // 4. QEMU traps the PASID-cache flush and finds the host PASID (G-to-H, fast, VMM).
    assert.equal(map.vmmGuestToHost(1, 'PASID-cache flush'), 3);
    map.map(1, dsa0);
    map.map(1, dsa1);
    // 5. bind_gpasid(hpasid, gpasid, dev) keeps H-to-G in the host driver.
    map.bind(3, 1, 'dsa0');
    map.bind(3, 1, 'dsa1');
    // 7. The VDCM asks the driver for the host PASID of the guest's DWQ PASID: a reverse search.
    assert.equal(map.driverGuestToHost(1, 'dsa0', { requester: 'vdcm', why: 'DWQ PASID' }), 3);
    // PRQ 2: the host driver finds the guest PASID in the bind's private data (H-to-G, fast).
    assert.equal(map.driverHostToGuest(3, 'dsa0', 'page request'), 1);
    // PR response 2: QEMU's G-to-H.
    assert.equal(map.vmmGuestToHost(1, 'page response'), 3);
    assert.deepEqual(
      map.trace.all.map((t) => [t.side, t.direction, t.kind, t.from, t.to, t.requester ?? '-']),
      [
        ['vmm', 'G-to-H', 'fast', 1, 3, '-'],
        ['host-driver', 'G-to-H', 'reverse', 1, 3, 'vdcm'],
        ['host-driver', 'H-to-G', 'fast', 3, 1, '-'],
        ['vmm', 'G-to-H', 'fast', 1, 3, '-'],
      ],
    );
    assert.deepEqual(map.findings, []);
  });

  it('shares one host PASID among the devices of a VM, refcounted per user, and frees it with the last', () => {
    const host = busyHost();
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0, dsa1] });
    assert.equal(map.map(5, dsa0), 3);
    assert.equal(map.map(5, dsa0), 3);
    assert.equal(map.map(5, dsa1), 3);
    assert.deepEqual(map.entries(), [{ guest: 5, host: 3, vcmd: false, users: [{ name: 'dsa0', refs: 2 }, { name: 'dsa1', refs: 1 }] }]);
    map.unmap(5, dsa1);
    map.unmap(5, dsa0);
    assert.ok(host.global.has(3), 'dsa0 still holds a reference');
    map.unmap(5, 'dsa0');
    assert.equal(map.size, 0);
    assert.equal(host.global.has(3), false, 'the host PASID went back to the allocator');
    throwsErrno(() => map.unmap(5, dsa0), 'ENOENT');
  });

  it('keeps a PASID from ALLOC_PASID past its last user, until FREE_PASID', () => {
    const host = busyHost();
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0] });
    const { guest, host: h } = map.allocGuest();
    map.map(guest, dsa0);
    throwsErrno(() => map.freeGuest(guest), 'EBUSY');
    map.unmap(guest, dsa0);
    assert.equal(map.vmmGuestToHost(guest), h);
    map.freeGuest(guest);
    assert.equal(host.global.has(h), false);
    map.map(7, dsa0);
    throwsErrno(() => map.freeGuest(7), 'EINVAL');
  });

  it('with identity PASIDs, maps G = H and leaves the host global allocator alone', () => {
    const host = new PasidAllocator();
    const map = new PasidMap({ vm: 'vm0', policy: 'identity', allocator: host, devices: [dsa0] });
    assert.equal(map.map(42, dsa0), 42);
    assert.deepEqual(map.allocGuest(), { guest: 1, host: 1 });
    assert.equal(host.global.size, 0);
    assert.equal(map.vmmHostToGuest(42), 42);
  });

  it('refuses a host PASID too wide for a device with EOVERFLOW and leaves nothing behind', () => {
    const host = new PasidAllocator();
    for (let i = 0; i < 8; i++) host.allocGlobal(dsa0); // 1..8 taken by the host
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0] });
    throwsErrno(() => map.map(1, narrow), 'EOVERFLOW'); // host PASID 9 >= narrow's max_pasids 8
    assert.equal(map.size, 0);
    assert.equal(host.global.has(9), false);
    assert.deepEqual(map.leftovers(), []);
  });

  it('reports a host PASID freed while still bound, and its reuse by the next allocation', () => {
    const host = busyHost();
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0] });
    map.map(1, dsa0);
    map.bind(3, 1, 'dsa0');
    map.unmap(1, dsa0); // the VMM forgot to unbind first
    map.map(2, dsa0); // lowest free global PASID: 3 again
    assert.deepEqual(
      map.findings.map((f) => [f.code, f.guestPasid, f.hostPasid]),
      [
        ['host-pasid-freed-while-attached', 1, 3],
        ['host-pasid-reused', 2, 3],
      ],
    );
    assert.match(map.findings[1]!.message, /dsa0 has it bound/);
  });

  it('reports a host PASID released while the CPU PASID translation table still maps it', () => {
    const host = busyHost();
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0] });
    const cpu = new CpuPasidTable('vm0');
    map.addHolder(cpu);
    const h = map.map(1, { name: 'kvm' });
    cpu.map(1, h);
    map.unmap(1, 'kvm');
    assert.deepEqual(map.findings.map((f) => f.code), ['host-pasid-freed-while-attached']);
    assert.match(map.findings[0]!.message, /the CPU PASID translation table of vm0 maps it/);
  });

  it('reports two guest PASIDs on one host PASID when the allocator hands out a PASID twice', () => {
    const broken: HostPasidAllocator = { allocGlobal: () => 77, freeGlobal: () => undefined };
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: broken, devices: [dsa0] });
    map.map(1, dsa0);
    map.map(2, dsa0);
    assert.deepEqual(map.findings.map((f) => [f.code, f.guestPasid, f.hostPasid]), [['not-bijective', 2, 77]]);
    assert.deepEqual(map.checkBijection().map((f) => f.message), ['vm0: guest PASIDs 1 and 2 both map to host PASID 77']);
  });

  it('checks that a G-to-H entry exists before a host PASID entry is made present', () => {
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: busyHost(), devices: [dsa0] });
    assert.equal(map.checkPresent(3)?.code, 'present-without-mapping');
    map.map(1, dsa0);
    assert.equal(map.checkPresent(3), undefined);
    assert.equal(map.checkPresent(3, 1), undefined);
    assert.equal(map.checkPresent(4, 1)?.message, 'vm0: host PASID 4 made present for guest PASID 1, but G-to-H maps it to host PASID 3');
    map.bind(9, 2, 'dsa0');
    assert.deepEqual(map.findings.map((f) => [f.code, f.guestPasid, f.hostPasid]), [
      ['present-without-mapping', undefined, 3],
      ['present-without-mapping', 1, 4],
      ['present-without-mapping', 2, 9],
    ]);
  });

  it('lists what is left before teardown and nothing after it', () => {
    const host = busyHost();
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0] });
    map.allocGuest();
    map.map(4, dsa0);
    map.bind(4, 4, 'dsa0'); // host PASID 4 belongs to guest PASID 4
    assert.deepEqual(map.leftovers().map((f) => f.message), [
      'vm0: guest PASID 1 still maps to host PASID 3, allocated by ALLOC_PASID and never freed',
      'vm0: guest PASID 4 still maps to host PASID 4, used by dsa0 (1)',
      'vm0: dsa0 still has host PASID 4 bound to guest PASID 4',
    ]);
    map.teardown();
    assert.deepEqual(map.leftovers(), []);
    assert.deepEqual([...Array(8).keys()].filter((p) => host.global.has(p)), [1, 2], 'only the host\'s own PASIDs remain');
    assert.deepEqual(map.findings, []);
  });

  it('confines guest PASIDs to the local range and host PASIDs to the global range of a split', () => {
    const host = new PasidAllocator();
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0], split: new PasidSplit(4) });
    assert.deepEqual([map.allocGuest(), map.allocGuest(), map.allocGuest()], [
      { guest: 1, host: 4 },
      { guest: 2, host: 5 },
      { guest: 3, host: 6 },
    ]);
    throwsErrno(() => map.allocGuest(), 'ENOSPC');
    throwsErrno(() => map.map(4, dsa0), 'ERANGE');
    throwsErrno(() => new PasidMap({ vm: 'vm1', policy: 'identity', devices: [dsa0], split: new PasidSplit(4) }), 'EINVAL');
  });

  it('gives the guest PASID back when the host has no PASID for it', () => {
    const tiny: PasidCapable = { name: 'tiny', maxPasids: 4 }; // global PASIDs [1, 3]
    const host = new PasidAllocator();
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [tiny] });
    map.allocGuest();
    map.allocGuest();
    map.allocGuest();
    throwsErrno(() => map.allocGuest(), 'ENOSPC');
    map.freeGuest(2);
    assert.equal(map.map(4, tiny), 2, 'guest PASID 4 was not kept by the failed allocation');
    assert.equal(map.size, 3);
  });

  it('migrates guest PASIDs only: the destination re-allocates host PASIDs and says which replaced which', () => {
    const split = new PasidSplit(1024);
    const src = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: new PasidAllocator(), devices: [dsa0, dsa1], split });
    src.allocGuest(); // 1 -> 1024
    src.map(7, dsa0); // 7 -> 1025
    src.map(7, dsa1);
    src.map(9, { name: 'kvm' }); // 9 -> 1026
    const state = src.exportGuestState();
    assert.deepEqual(JSON.parse(JSON.stringify(state)), state, 'plain data');
    assert.doesNotMatch(JSON.stringify(state), /"host|1025|1026/);
    const dest = new PasidAllocator();
    for (let i = 0; i < 1025; i++) dest.allocGlobal(dsa0); // another VM holds 1..1025 on the destination
    const { map, hostRemap } = src.rebuild({ allocator: dest, devices: [dsa0, dsa1] });
    assert.deepEqual(map.entries(), [
      { guest: 1, host: 1026, vcmd: true, users: [] },
      { guest: 7, host: 1027, vcmd: false, users: [{ name: 'dsa0', refs: 1 }, { name: 'dsa1', refs: 1 }] },
      { guest: 9, host: 1028, vcmd: false, users: [{ name: 'kvm', refs: 1 }] },
    ]);
    assert.deepEqual([...hostRemap], [[1024, 1026], [1025, 1027], [1026, 1028]]);
    assert.equal(map.split?.globalMin, 1024);
  });

  describe('properties', () => {
    const users = [dsa0, dsa1, { name: 'kvm' }] as const;
    type Op =
      | { op: 'alloc' }
      | { op: 'map'; guest: number; user: number }
      | { op: 'unmap'; pick: number }
      | { op: 'free'; pick: number }
      | { op: 'bind'; pick: number; device: number }
      | { op: 'unbind'; pick: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.constant({ op: 'alloc' as const }),
      fc.record({ op: fc.constant('map' as const), guest: fc.integer({ min: 1, max: 12 }), user: fc.nat(2) }),
      fc.record({ op: fc.constant('unmap' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('free' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('bind' as const), pick: fc.nat(), device: fc.nat(1) }),
      fc.record({ op: fc.constant('unbind' as const), pick: fc.nat() }),
    );

    /** Runs `ops` as a careful VMM would (unbind before the last unmap), checking the table after each step
     * against a reference model of the refcounts. */
    function run(map: PasidMap, host: PasidAllocator, ops: readonly Op[], guestLimit: number): void {
      const refs = new Map<number, Map<string, number>>(); // guest -> user -> refs
      const vcmd = new Set<number>();
      const binds: { host: number; guest: number; device: string }[] = [];
      const pairs = () => [...refs].flatMap(([g, us]) => [...us.keys()].map((u) => [g, u] as const));
      const lastUse = (g: number) => !vcmd.has(g) && [...(refs.get(g)?.values() ?? [])].reduce((a, b) => a + b, 0) === 1;
      for (const o of ops) {
        if (o.op === 'alloc') {
          if (new Set([...refs.keys(), ...vcmd]).size >= guestLimit) continue;
          const { guest } = map.allocGuest();
          assert.ok(!refs.has(guest) && !vcmd.has(guest), `ALLOC_PASID returned guest PASID ${guest}, which is in use`);
          vcmd.add(guest);
        } else if (o.op === 'map') {
          const u = users[o.user]!;
          map.map(o.guest, u);
          const us = refs.get(o.guest) ?? new Map<string, number>();
          us.set(u.name, (us.get(u.name) ?? 0) + 1);
          refs.set(o.guest, us);
        } else if (o.op === 'unmap') {
          const all = pairs();
          if (!all.length) continue;
          const [g, u] = all[o.pick % all.length]!;
          if (lastUse(g)) {
            for (const b of binds.filter((b) => b.guest === g)) map.unbind(b.host, b.device);
            binds.splice(0, binds.length, ...binds.filter((b) => b.guest !== g));
          }
          map.unmap(g, u);
          const us = refs.get(g)!;
          if (us.get(u)! > 1) us.set(u, us.get(u)! - 1);
          else us.delete(u);
          if (!us.size) refs.delete(g);
        } else if (o.op === 'free') {
          const free = [...vcmd].filter((g) => !refs.has(g));
          if (!free.length) continue;
          const g = free[o.pick % free.length]!;
          for (const b of binds.filter((b) => b.guest === g)) map.unbind(b.host, b.device);
          binds.splice(0, binds.length, ...binds.filter((b) => b.guest !== g));
          map.freeGuest(g);
          vcmd.delete(g);
        } else if (o.op === 'bind') {
          const mapped = map.entries();
          if (!mapped.length) continue;
          const e = mapped[o.pick % mapped.length]!;
          const device = ['dsa0', 'dsa1'][o.device]!;
          if (binds.some((b) => b.host === e.host && b.device === device)) continue;
          map.bind(e.host, e.guest, device);
          binds.push({ host: e.host, guest: e.guest, device });
        } else {
          if (!binds.length) continue;
          const [b] = binds.splice(o.pick % binds.length, 1);
          map.unbind(b!.host, b!.device);
        }
        // The table matches the reference, G-to-H is a bijection, and the host allocator holds exactly
        // the host PASIDs of the table.
        const entries = map.entries();
        assert.deepEqual(
          entries.map((e) => [e.guest, e.vcmd, e.users.map((u) => [u.name, u.refs])]),
          [...new Set([...refs.keys(), ...vcmd])].sort((a, b) => a - b).map((g) => [g, vcmd.has(g), [...(refs.get(g) ?? [])].sort()]),
        );
        assert.equal(new Set(entries.map((e) => e.host)).size, entries.length);
        assert.deepEqual(map.checkBijection(), []);
        assert.equal(host.global.size, entries.length);
        for (const e of entries) assert.ok(host.global.has(e.host));
        for (const b of binds) assert.equal(map.driverHostToGuest(b.host, b.device), b.guest);
        assert.deepEqual(map.findings, []);
      }
    }

    it('random alloc/map/unmap/free/bind sequences keep G-to-H a bijection and leave nothing after teardown', () => {
      fc.assert(
        fc.property(fc.array(op, { minLength: 10, maxLength: 80, size: 'max' }), (ops) => {
          const host = new PasidAllocator();
          const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0, dsa1] });
          run(map, host, ops, 2 ** 20 - 1);
          map.teardown();
          assert.deepEqual(map.leftovers(), []);
          assert.equal(host.global.size, 0);
          assert.deepEqual(map.findings, []);
        }),
        { numRuns: 200 },
      );
    });

    it('after migration, the rebuilt table is a bijection over the same guest PASIDs, from the destination allocator', () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 60, size: 'max' }), fc.integer({ min: 0, max: 30 }), (ops, busy) => {
          const split = new PasidSplit(16);
          const host = new PasidAllocator();
          const src = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: host, devices: [dsa0, dsa1], split });
          run(src, host, ops.map((o) => (o.op === 'map' ? { ...o, guest: Math.min(o.guest, 15) } : o)), 15);
          const dest = new PasidAllocator();
          for (let i = 0; i < busy; i++) dest.allocGlobal(dsa0, 16); // the destination's own users
          const { map, hostRemap } = src.rebuild({ allocator: dest, devices: [dsa0, dsa1] });
          const before = src.entries();
          const after = map.entries();
          assert.deepEqual(after.map((e) => [e.guest, e.vcmd, e.users]), before.map((e) => [e.guest, e.vcmd, e.users]));
          assert.deepEqual(map.checkBijection(), []);
          assert.equal(dest.global.size, busy + after.length);
          for (const e of after) assert.ok(e.host >= 16 + busy, `host PASID ${e.host} was free on the destination`);
          const byOldHost = (a: [number, number], b: [number, number]) => a[0] - b[0];
          assert.deepEqual([...hostRemap].sort(byOldHost), before.map((e, i): [number, number] => [e.host, after[i]!.host]).sort(byOldHost));
          map.teardown();
          assert.deepEqual(map.leftovers(), []);
          assert.equal(dest.global.size, busy);
        }),
        { numRuns: 100 },
      );
    });
  });
});
