/**
 * Approvals kept in process memory (one process; tests and embedded use without persistence).
 */
import { type ApprovalBackend, ApprovalStoreImpl, type ApprovalTx } from './engine.js';
import type { Approval, ApprovalFilter, ApprovalStore, ApprovalStoreOptions } from './types.js';

interface Entry {
  a: Approval;
  binding: string;
}

class MemoryBackend implements ApprovalBackend {
  readonly #rows = new Map<string, Entry>();
  #chain: Promise<unknown> = Promise.resolve();

  transaction<T>(fn: (tx: ApprovalTx) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      // Undo log: a transaction that throws leaves no trace.
      const undo: [string, Entry | undefined][] = [];
      const rows = this.#rows;
      const put = (id: string, e: Entry) => {
        undo.push([id, rows.get(id)]);
        rows.set(id, e);
      };
      const tx: ApprovalTx = {
        lock: async () => {},
        get: async (id) => rows.get(id)?.a,
        pendingFor: async (b) =>
          [...rows.values()].filter((e) => e.binding === b && e.a.status === 'pending').map((e) => e.a),
        grantsFor: async (b, now) =>
          [...rows.values()]
            .filter(
              (e) =>
                e.binding === b && e.a.status === 'granted' && e.a.used < e.a.uses && now < e.a.expiresAt,
            )
            .map((e) => e.a)
            .sort((x, y) => x.createdAt - y.createdAt),
        insert: async (a, binding) => put(a.id, { a, binding }),
        update: async (a) => {
          const e = rows.get(a.id);
          if (e === undefined) throw new Error(`no approval \`${a.id}\``);
          put(a.id, { a, binding: e.binding });
        },
        decisionsSince: async (approver, since) =>
          [...rows.values()].filter((e) => e.a.approver === approver && (e.a.decidedAt ?? 0) > since).length,
        due: async (now) =>
          [...rows.values()]
            .filter((e) => (e.a.status === 'pending' || e.a.status === 'granted') && e.a.expiresAt <= now)
            .map((e) => e.a),
        list: async (f: ApprovalFilter) =>
          [...rows.values()]
            .map((e) => e.a)
            .filter(
              (a) =>
                (f.status === undefined || a.status === f.status) &&
                (f.agent === undefined || a.agent === f.agent),
            )
            .sort((x, y) => y.createdAt - x.createdAt || (y.id < x.id ? -1 : 1))
            .slice(0, f.limit ?? 100),
      };
      try {
        return await fn(tx);
      } catch (err) {
        for (let i = undo.length - 1; i >= 0; i--) {
          const [id, prev] = undo[i] as [string, Entry | undefined];
          if (prev === undefined) rows.delete(id);
          else rows.set(id, prev);
        }
        throw err;
      }
    };
    const p = this.#chain.then(run, run);
    this.#chain = p.catch(() => {});
    return p;
  }

  async close(): Promise<void> {
    this.#rows.clear();
  }
}

/** An approval store in process memory. */
export function memoryApprovalStore(options: ApprovalStoreOptions = {}): ApprovalStore {
  return new ApprovalStoreImpl(new MemoryBackend(), options);
}
