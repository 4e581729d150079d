import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from 'prom-client'

/**
 * DaemonMetrics are the daemon's Prometheus series. Each daemon has its own registry,
 * so several daemons (or tests) in one process do not share counters.
 */
export interface DaemonMetrics {
  readonly registry: Registry
  mapMessages: Counter<'type'>
  applyDuration: Histogram<'result'>
  errors: Counter<'where'>
  peers: Gauge
  controllerConnected: Gauge
  /** render returns the text exposition format for GET /metrics */
  render(): Promise<string>
}

/** createDaemonMetrics registers the daemon's series (and Node's process metrics) in a fresh registry. */
export function createDaemonMetrics (): DaemonMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'warren_node_' })
  return {
    registry,
    mapMessages: new Counter({ name: 'warren_node_map_messages_total', help: 'Map session messages received from the controller, by type', labelNames: ['type'], registers: [registry] }),
    applyDuration: new Histogram({
      name: 'warren_node_apply_duration_seconds',
      help: 'Time to reconcile the system (WireGuard, routes, firewall, DNS) with one network map',
      labelNames: ['result'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry]
    }),
    errors: new Counter({ name: 'warren_node_errors_total', help: 'Errors, by where they happened', labelNames: ['where'], registers: [registry] }),
    peers: new Gauge({ name: 'warren_node_peers', help: 'Peers in the current network map', registers: [registry] }),
    controllerConnected: new Gauge({ name: 'warren_node_controller_connected', help: '1 while the map session with the controller is up', registers: [registry] }),
    render: async () => await registry.metrics()
  }
}
