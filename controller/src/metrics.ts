import { Registry, Counter, Gauge, collectDefaultMetrics } from 'prom-client'
import type { ControllerState } from './state.js'

/**
 * ControllerMetrics are the Prometheus series served at /metrics. Each controller has
 * its own Registry (several can run in one test process); other modules (the map
 * server) register their series on `registry`.
 */
export interface ControllerMetrics {
  registry: Registry
  /** registrations by result: `ok` or the error code */
  registrations: Counter<'result'>
  /** HTTP error answers by error code */
  httpErrors: Counter<'code'>
}

export function createControllerMetrics (state: ControllerState): ControllerMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'warren_controller_' })
  const registrations = new Counter({
    name: 'warren_controller_registrations_total',
    help: 'Node registrations by result (ok or the error code)',
    labelNames: ['result'] as const,
    registers: [registry]
  })
  const httpErrors = new Counter({
    name: 'warren_controller_http_errors_total',
    help: 'HTTP error answers by error code',
    labelNames: ['code'] as const,
    registers: [registry]
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'warren_controller_nodes',
    help: 'Nodes by status (active, pending, expired) and online state',
    labelNames: ['status', 'online'] as const,
    registers: [registry],
    collect () {
      this.reset()
      for (const n of state.listNodes()) this.inc({ status: n.status, online: String(n.online) })
    }
  })
  return { registry, registrations, httpErrors }
}
