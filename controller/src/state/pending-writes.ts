import type { StoreOp } from '../store.js'

/**
 * PendingWrites collects records changed in memory only (lastSeen, lastUsed: frequent,
 * cheap to lose) until the next flush writes them in one batch.
 */
export interface PendingWrites {
  mark: (id: string) => void
  forget: (id: string) => void
  /** take gives the puts for every marked record still present, and forgets them */
  take: () => StoreOp[]
}

export function createPendingWrites<R> (records: ReadonlyMap<string, R>, put: (record: R) => StoreOp): PendingWrites {
  const ids = new Set<string>()
  return {
    mark: id => { ids.add(id) },
    forget: id => { ids.delete(id) },
    take () {
      const ops: StoreOp[] = []
      for (const id of ids) {
        const record = records.get(id)
        if (record !== undefined) ops.push(put(record))
      }
      ids.clear()
      return ops
    }
  }
}
