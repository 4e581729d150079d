import http from 'node:http'
import { WarrenError, parseHostPort } from '@warren/protocol'
import type { DaemonMetrics } from './metrics.js'

/** serveDaemonMetrics serves GET /metrics on its own address, for scrapers that cannot reach the LocalAPI socket. */
export async function serveDaemonMetrics (listen: string, metrics: DaemonMetrics): Promise<{ server: http.Server, url: string }> {
  const parsed = parseHostPort(listen, '--metrics-listen')
  const host = parsed.host === '' ? '0.0.0.0' : parsed.host
  const port = parsed.port
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n')
      return
    }
    metrics.render().then(text => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (e: Error) => res.writeHead(500).end(e.message))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', e => reject(new WarrenError('listen_failed', `cannot serve metrics on ${listen}: ${e.message}`, { status: 500 })))
    server.listen(port, host, resolve)
  })
  const a = server.address() as { address: string, port: number }
  return { server, url: `http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}/metrics` }
}
