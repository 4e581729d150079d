import type { NetmapUpdate } from '../control/map-session.js'
import { stateFor, updateHealthForSelf, type DaemonContext } from './daemon-context.js'

/** MapApplier applies network maps to the data plane one at a time; the newest waiting map wins. */
export interface MapApplier {
  /** queue records a map from session generation `gen` and applies it when the data plane is free */
  queue: (u: NetmapUpdate, gen: number) => void
  /** applying is the run in progress, if any */
  readonly applying: Promise<void> | undefined
  /** cancel drops the waiting map and any retry */
  cancel: () => void
}

/** createMapApplier keeps the apply loop apart from the session, which may deliver maps faster than they apply. */
export function createMapApplier (d: DaemonContext): MapApplier {
  const { dataPlane, metrics, health, store, log } = d
  let pendingApply: { update: NetmapUpdate, gen: number } | undefined
  let applying: Promise<void> | undefined
  let retryTimer: NodeJS.Timeout | undefined
  /** the inbound filter last enforced, to tell watchers when the policy applied here changed */
  let lastFilter: string | undefined

  function queueApply (u: NetmapUpdate, gen: number): void {
    if (gen !== d.generation) return
    d.netmap = u.netmap
    metrics.peers.set(u.netmap.peers.length)
    pendingApply = { update: u, gen }
    applying ??= drain().finally(() => { applying = undefined })
  }

  async function drain (): Promise<void> {
    while (pendingApply !== undefined) {
      const { update: u, gen } = pendingApply
      pendingApply = undefined
      // A map from before the last up/down is stale: down() has removed, or up() replaced, it.
      if (gen !== d.generation) continue
      const end = metrics.applyDuration.startTimer()
      try {
        await dataPlane.apply(u.netmap, d.login?.routing, d.login?.controller)
        end({ result: 'ok' })
        health.delete('apply')
        if (gen !== d.generation) continue
        d.state = stateFor(u.netmap.self)
        updateHealthForSelf(health, u.netmap.self)
        await store.writeMap({ session: u.session, seq: u.seq, netmap: u.netmap })
        await d.paths.update(u.netmap)
        const filter = JSON.stringify(u.netmap.filter)
        d.changes.notify(filter !== lastFilter ? 'policy' : 'map')
        lastFilter = filter
        log.info({ peers: u.netmap.peers.length, seq: u.seq, full: u.full }, 'network map applied')
      } catch (e) {
        end({ result: 'error' })
        metrics.errors.labels('apply').inc()
        health.set('apply', `could not apply the network map: ${(e as Error).message}`)
        log.error({ err: (e as Error).message }, 'applying the network map failed; retrying')
        clearTimeout(retryTimer)
        retryTimer = setTimeout(() => { if (pendingApply === undefined) queueApply(u, gen) }, 5000)
        retryTimer.unref()
      }
    }
  }

  return {
    queue: queueApply,
    get applying () { return applying },
    cancel () {
      pendingApply = undefined
      clearTimeout(retryTimer)
    }
  }
}
