import { Counter, Gauge, Histogram, Registry } from 'prom-client'

/**
 * MapMetrics are the Prometheus series of map streaming. They live in the registry the
 * controller serves at /metrics, or in a private one when none is given (tests, and a
 * second map service in one process, must not collide on metric names).
 */
export interface MapMetrics {
  registry: Registry
  connected: Gauge
  messages: Counter<'type'>
  bytes: Counter
  fanout: Histogram
  changeSeconds: Histogram
  errors: Counter<'code'>
}

export function createMapMetrics (registry: Registry = new Registry()): MapMetrics {
  const registers = [registry]
  return {
    registry,
    connected: new Gauge({ name: 'warren_map_connected_nodes', help: 'Nodes with an open, authenticated map session', registers }),
    messages: new Counter({ name: 'warren_map_messages_sent_total', help: 'Map messages sent to nodes, by type', labelNames: ['type'], registers }),
    bytes: new Counter({ name: 'warren_map_bytes_sent_total', help: 'Bytes of map messages sent to nodes', registers }),
    fanout: new Histogram({
      name: 'warren_map_delta_fanout',
      help: 'Map sessions touched by one node change',
      buckets: [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000],
      registers
    }),
    changeSeconds: new Histogram({
      name: 'warren_map_change_seconds',
      help: 'Time to work out which sessions a node change affects',
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers
    }),
    errors: new Counter({ name: 'warren_map_errors_total', help: 'Map session errors sent or met, by code', labelNames: ['code'], registers })
  }
}
