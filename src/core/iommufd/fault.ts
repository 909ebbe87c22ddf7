import type { PageFault, PageResponseCode } from '../driver/domain';
import { fail } from '../driver/errors';
import type { IommuKernel } from '../driver/kernel';
import type { IommufdObject } from './objects';
import { PAGE_RESP, PGFAULT_FLAGS, PGFAULT_PERM, SIZEOF } from './uapi';

/**
 * IOMMU_FAULT_QUEUE_ALLOC (drivers/iommu/iommufd/eventq.c): page request groups that reach a HWPT with a
 * fault queue wait here until userspace reads them from the fault fd (each group gets a cookie when it is
 * read) and writes a response with that cookie, which the kernel turns into the page group response.
 */

/** `struct iommu_hwpt_pgfault`, one per page request of a group; all of a group share the cookie. */
export interface HwptPgfault {
  readonly flags: number;
  readonly devId: number;
  readonly pasid: number;
  readonly grpid: number;
  readonly perm: number;
  readonly addr: bigint;
  readonly length: number;
  readonly cookie: number;
}

/** `struct iommu_hwpt_page_response`. */
export interface HwptPageResponse {
  readonly cookie: number;
  readonly code: number;
}

/** A group as the queue holds it: who raised it (device object id, PASID, HWPT) and its faults. */
export interface QueuedGroup {
  readonly faults: readonly PageFault[];
  readonly devId: number;
  /** 0 for requests without PASID (the RID's attachment). */
  readonly pasid: number;
  /** The HWPT object the group arrived through (its attach handle). */
  readonly hwpt: IommufdObject;
  cookie: number;
}

export class FaultQueue implements IommufdObject {
  readonly type = 'FAULT';
  id = 0;
  users = 1;
  /** Groups not read yet, oldest first. */
  private readonly deliver: QueuedGroup[] = [];
  /** Groups read and waiting for a response, by cookie. */
  private readonly response = new Map<number, QueuedGroup>();

  constructor(private readonly kernel: IommuKernel) {}

  /** iommufd_fault_iopf_handler. */
  enqueue(group: Omit<QueuedGroup, 'cookie'>): void {
    this.deliver.push({ ...group, cookie: 0 });
  }

  get pendingCount(): number {
    return this.deliver.length + this.response.size;
  }

  /**
   * read(): whole groups only, while they fit in `count` bytes; each group read gets the lowest free
   * cookie (from 1) and moves to the response table.
   */
  read(count: number): HwptPgfault[] {
    if (count % SIZEOF.HWPT_PGFAULT !== 0) fail('ESPIPE', `read size ${count} is not a multiple of sizeof(struct iommu_hwpt_pgfault) = ${SIZEOF.HWPT_PGFAULT}`);
    const out: HwptPgfault[] = [];
    let room = count / SIZEOF.HWPT_PGFAULT;
    while (this.deliver.length && this.deliver[0]!.faults.length <= room) {
      const g = this.deliver.shift()!;
      let cookie = 1;
      while (this.response.has(cookie)) cookie++;
      g.cookie = cookie;
      this.response.set(cookie, g);
      for (const f of g.faults) out.push(pgfaultRecord(f, g));
      room -= g.faults.length;
    }
    return out;
  }

  /**
   * write(): one response per 8 bytes. A bad code or a cookie that no read group has stops the loop;
   * the bytes consumed before it are returned, or EINVAL if none were.
   */
  write(responses: readonly HwptPageResponse[], count = responses.length * SIZEOF.HWPT_PAGE_RESPONSE): number {
    if (count % SIZEOF.HWPT_PAGE_RESPONSE !== 0) fail('ESPIPE', `write size ${count} is not a multiple of sizeof(struct iommu_hwpt_page_response) = ${SIZEOF.HWPT_PAGE_RESPONSE}`);
    let done = 0;
    for (let i = 0; i * SIZEOF.HWPT_PAGE_RESPONSE < count; i++) {
      const r = responses[i];
      let why: string | undefined;
      if (r === undefined) why = `response ${i} lies outside the buffer`;
      else if (r.code !== PAGE_RESP.SUCCESS && r.code !== PAGE_RESP.INVALID) why = `response code ${r.code} is neither SUCCESS (0) nor INVALID (1)`;
      else if (!this.response.has(r.cookie)) why = `no group read from this queue has cookie ${r.cookie}`;
      if (why !== undefined) {
        if (done) return done;
        return fail(r === undefined ? 'EFAULT' : 'EINVAL', why);
      }
      const g = this.response.get(r!.cookie)!;
      this.response.delete(r!.cookie);
      this.respond(g, r!.code === PAGE_RESP.SUCCESS ? 'success' : 'invalid');
      done += SIZEOF.HWPT_PAGE_RESPONSE;
    }
    return done;
  }

  /** iommufd_auto_response_faults: INVALID to every group (read or not) that `match` selects. */
  autoRespond(match: (g: QueuedGroup) => boolean): void {
    for (let i = this.deliver.length - 1; i >= 0; i--) {
      const g = this.deliver[i]!;
      if (!match(g)) continue;
      this.deliver.splice(i, 1);
      this.respond(g, 'invalid');
    }
    for (const [cookie, g] of [...this.response]) {
      if (!match(g)) continue;
      this.response.delete(cookie);
      this.respond(g, 'invalid');
    }
  }

  /**
   * iopf_group_response. The driver model's PRQ drain may already have answered the group (a detach tears
   * the PASID entry down before iommufd gets to it), and the device must see one response only.
   */
  private respond(g: QueuedGroup, code: PageResponseCode): void {
    const waiting = [...this.kernel.pendingGroups.values()].some((p) => p.faults === g.faults);
    if (!waiting) return;
    const f = g.faults[0]!;
    this.kernel.pageResponse(f.device, f.pasid, f.prgIndex, code);
  }
}

function pgfaultRecord(f: PageFault, g: QueuedGroup): HwptPgfault {
  const flags = (f.lastPage ? PGFAULT_FLAGS.LAST_PAGE : 0) | (f.pasid !== undefined ? PGFAULT_FLAGS.PASID_VALID | PGFAULT_FLAGS.NEEDS_PASID : 0);
  const perm = (f.read ? PGFAULT_PERM.READ : 0) | (f.write ? PGFAULT_PERM.WRITE : 0) | (f.exec ? PGFAULT_PERM.EXEC : 0) | (f.priv ? PGFAULT_PERM.PRIV : 0);
  return { flags, devId: g.devId, pasid: f.pasid ?? 0, grpid: f.prgIndex, perm, addr: BigInt(f.address), length: 0, cookie: g.cookie };
}

/**
 * The fault fd IOMMU_FAULT_QUEUE_ALLOC returns. It holds a reference on the queue object, so the object can
 * be destroyed only after the fd is closed.
 */
export class FaultFd {
  private open = true;

  constructor(readonly queue: FaultQueue) {
    queue.users++;
  }

  get closed(): boolean {
    return !this.open;
  }

  /** read(fd, buf, count); `count` defaults to room for every pending fault. */
  read(count?: number): HwptPgfault[] {
    this.check();
    return this.queue.read(count ?? SIZEOF.HWPT_PGFAULT * 512);
  }

  /** write(fd, responses, count): the bytes consumed. */
  write(responses: readonly HwptPageResponse[], count?: number): number {
    this.check();
    return this.queue.write(responses, count);
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.queue.users--;
  }

  private check(): void {
    if (!this.open) fail('EBADF', 'the fault fd is closed');
  }
}
