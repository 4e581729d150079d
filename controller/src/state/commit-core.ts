import { EventEmitter } from 'node:events'
import { createSerialQueue, type Node, type User, type AuditEntry } from '@warren/protocol'
import type { Store, StoreOp } from '../store.js'

export interface StateEventMap {
  'node-upserted': [node: Node, previous: Node | undefined]
  'node-removed': [node: Node]
  'user-upserted': [user: User]
  'user-removed': [user: User]
}
export type StateEvents = EventEmitter<StateEventMap>

/** Deferred is a committed change: `durable` resolves when it is on disk, then `done` gives the result (and fires events). */
export interface Deferred<R> { durable: Promise<void>, done: () => R }

/**
 * CommitCore is what every part of the controller state changes through. `locked` turns
 * a change into a state method: the change's checks and memory update run alone in one
 * serial queue, its store ops (with the audit entry from `auditOp`) go to disk as one
 * batch, and the method resolves, and `done` fires events, only once that batch is
 * durable. The queue is released before the disk write ends, so concurrent changes
 * share one fsync.
 */
export interface CommitCore {
  readonly store: Store
  readonly events: StateEvents
  now: () => number
  /** iso formats a time (default: now) the way the state stores times */
  iso: (t?: number) => string
  /** emit calls each listener; a throwing listener is reported, never passed to the caller */
  emit: <K extends keyof StateEventMap>(event: K, ...args: StateEventMap[K]) => void
  /** auditOp makes the audit entry for a change; only valid inside a `locked` change */
  auditOp: (actor: string, action: string, target: string, detail?: Record<string, unknown>) => StoreOp
  locked: <A extends unknown[], R>(change: (...a: A) => Deferred<R>) => (...a: A) => Promise<R>
  /** unchanged answers a change that had nothing to do */
  unchanged: <R>(value: R) => Deferred<R>
  /** written commits ops now and gives `done` once they are durable */
  written: <R>(ops: StoreOp[], done: () => R) => Deferred<R>
}

export interface CommitCoreOptions {
  store: Store
  now: () => number
  onListenerError?: ((err: unknown, event: string) => void) | undefined
}

export function createCommitCore (opts: CommitCoreOptions): CommitCore {
  const { store, now } = opts
  const queue = createSerialQueue()
  const events: StateEvents = new EventEmitter<StateEventMap>()
  events.setMaxListeners(0)
  let auditSeq = store.meta.auditSeq
  const iso = (t = now()): string => new Date(t).toISOString()

  return {
    store,
    events,
    now,
    iso,
    emit (event, ...args) {
      for (const listener of events.listeners(event)) {
        try {
          (listener as (...a: typeof args) => void)(...args)
        } catch (err) {
          opts.onListenerError?.(err, event)
        }
      }
    },
    auditOp (actor, action, target, detail) {
      const entry: AuditEntry = { seq: ++auditSeq, time: iso(), actor, action, target }
      if (detail !== undefined) entry.detail = detail
      return { type: 'audit', entry }
    },
    locked: change => async (...a) => {
      const deferred = await queue.run(() => {
        try {
          return change(...a)
        } catch (e) {
          // A refused change wrote nothing: hand its audit numbers out again.
          auditSeq = store.meta.auditSeq
          throw e
        }
      })
      await deferred.durable
      return deferred.done()
    },
    unchanged: value => ({ durable: Promise.resolve(), done: () => value }),
    written: (ops, done) => ({ durable: store.commit(ops), done })
  }
}
