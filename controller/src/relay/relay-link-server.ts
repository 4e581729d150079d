import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { isIP } from 'node:net'
import { WebSocketServer, WebSocket } from 'ws'
import {
  RELAY_LINK_PATH, RelayLinkHello, RelayLinkReply, validate, checkProtocolVersion, isWarrenError, parseHostPort, formatHostPort,
  type RelayLinkCommand
} from '@warren/protocol'
import type { RelayBackend, RelayBroker } from './relay-broker.js'
import type { RelayMembersFeed } from './relay-members-feed.js'
import { writeRawError } from '../raw-http.js'

/** RelayLinkLogger is the slice of a pino logger the link server writes to. */
export interface RelayLinkLogger {
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
}

export interface RelayLinkServerOptions {
  /**
   * authenticate checks the upgrade's `Authorization: Bearer <API key>` and returns the actor
   * the audit log names (`apikey:<id>`); it throws (a WarrenError with the HTTP status) when
   * the key is not a usable relay key
   */
  authenticate: (bearer: string) => string
  /** onLinked hears each relay that linked, with the actor its key authenticated as (for the audit log) */
  onLinked?: (actor: string, hello: RelayLinkHello) => void
  broker: () => RelayBroker | undefined
  /** who may use a relay's TLS relay, pushed to each relay that announced one (without it such a relay is refused) */
  members?: () => RelayMembersFeed | undefined
  /** how long a command may wait for the relay's reply (default 10 s) */
  replyTimeoutMs?: number
  log?: RelayLinkLogger
}

/** RelayLinkServer takes standalone relays' control connections at RELAY_LINK_PATH. */
export interface RelayLinkServer {
  /** handleUpgrade serves an upgrade for RELAY_LINK_PATH; false for other paths */
  handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean
  close: () => Promise<void>
}

/**
 * remoteBackend drives a standalone relay over its link: numbered commands, each answered
 * by a reply, so the broker uses it like the embedded relay. Commands fail at once when
 * the link is gone.
 */
function remoteBackend (ws: WebSocket, hello: RelayLinkHello, timeoutMs: number): RelayBackend & { onReply: (r: RelayLinkReply) => void, failAll: () => void } {
  let next = 0
  const waiting = new Map<number, { resolve: (r: RelayLinkReply) => void, reject: (e: Error) => void, timer: NodeJS.Timeout }>()
  const live = new Set<string>()
  const host = hello.udp === undefined ? undefined : parseHostPort(hello.udp, 'relay hello udp').host
  const host6 = hello.udp6 === undefined ? undefined : parseHostPort(hello.udp6, 'relay hello udp6').host
  async function call (cmd: RelayLinkCommand & { req: number }): Promise<RelayLinkReply> {
    if (ws.readyState !== WebSocket.OPEN) throw new Error(`relay '${hello.id}' is not connected`)
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(cmd.req)
        reject(new Error(`relay '${hello.id}' did not answer within ${timeoutMs} ms`))
      }, timeoutMs)
      waiting.set(cmd.req, { resolve, reject, timer })
      ws.send(JSON.stringify(cmd))
    })
  }
  return {
    info: { id: hello.id, ...(hello.udp !== undefined ? { udp: hello.udp } : {}), ...(hello.udp6 !== undefined ? { udp6: hello.udp6 } : {}), key: hello.key, ...(hello.tls !== undefined ? { tls: hello.tls.url, tlsFingerprint: hello.tls.fingerprint } : {}) },
    async allocate (req) {
      if (host === undefined) throw new Error(`relay '${hello.id}' runs no UDP relay`)
      const r = await call({ type: 'relay-allocate', req: next++, nodeKeys: [...req.nodeKeys], expiresAt: req.expiresAt })
      if (!r.ok || r.allocation === undefined) throw new Error(r.message ?? `relay '${hello.id}' refused the allocation`)
      live.add(r.allocation.id)
      return { id: r.allocation.id, sides: r.allocation.ports.map(port => ({ port })) }
    },
    renew (id, expiresAt) {
      if (!live.has(id) || ws.readyState !== WebSocket.OPEN) return false
      ws.send(JSON.stringify({ type: 'relay-renew', allocation: id, expiresAt } satisfies RelayLinkCommand))
      return true
    },
    async release (id) {
      if (!live.delete(id)) return
      await call({ type: 'relay-release', req: next++, allocation: id }).catch(() => {})
    },
    endpointOf: (port, family) => formatHostPort((family === 6 ? host6 : undefined) ?? host ?? '', port),
    onReply (r) {
      const w = waiting.get(r.req)
      if (w === undefined) return
      waiting.delete(r.req)
      clearTimeout(w.timer)
      w.resolve(r)
    },
    failAll () {
      for (const w of waiting.values()) {
        clearTimeout(w.timer)
        w.reject(new Error(`relay '${hello.id}' disconnected`))
      }
      waiting.clear()
      live.clear()
    }
  }
}

/**
 * createRelayLinkServer accepts a standalone relay: an upgrade with a relay API key, then
 * its hello; the relay joins the broker (and every map's NAT config) while connected. When
 * the link drops, the broker revokes every pair on it, and the relay (on its side)
 * releases all its allocations, so it never forwards what the controller cannot revoke.
 */
export function createRelayLinkServer (opts: RelayLinkServerOptions): RelayLinkServer {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024, perMessageDeflate: false })
  const log = opts.log
  const timeoutMs = opts.replyTimeoutMs ?? 10_000

  function accept (ws: WebSocket, actor: string): void {
    let backend: ReturnType<typeof remoteBackend> | undefined
    let unsubscribe: (() => void) | undefined
    const helloTimer = setTimeout(() => ws.close(4408, 'hello_timeout'), 10_000)
    const refuse = (code: string, message: string): void => {
      ws.send(JSON.stringify({ type: 'error', code, message } satisfies RelayLinkCommand))
      ws.close(4400, code)
    }
    ws.on('error', () => {})
    ws.on('message', (data, isBinary) => {
      let raw: { type?: unknown, version?: unknown }
      try {
        if (isBinary) throw new Error('relay link messages are JSON text')
        raw = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : String(data))
        if (backend === undefined) {
          if (typeof raw.version === 'number') checkProtocolVersion(raw.version, 'this relay')
          const hello = validate(RelayLinkHello, raw, 'relay hello')
          clearTimeout(helloTimer)
          const broker = opts.broker()
          if (broker === undefined) return refuse('no_map', 'this controller runs no map service, so it has no use for a relay')
          const members = hello.tls === undefined ? undefined : opts.members?.()
          if (hello.tls !== undefined && members === undefined) return refuse('no_tls_relay', 'this controller cannot tell a TLS relay its members; run the relay without --tls-listen')
          if (hello.udp === undefined && hello.tls === undefined) return refuse('invalid_input', 'the relay hello names neither a UDP nor a TLS relay; run the relay with --tls-listen or without --no-udp-relay')
          if (hello.udp6 !== undefined && (hello.udp === undefined || isIP(parseHostPort(hello.udp6, 'relay hello udp6').host) !== 6)) {
            return refuse('invalid_input', `the relay hello's udp6 '${hello.udp6}' must be an IPv6 address and port beside udp; check the relay's --public-host6`)
          }
          backend = remoteBackend(ws, hello, timeoutMs)
          ws.send(JSON.stringify({ type: 'relay-welcome' } satisfies RelayLinkCommand))
          // The members first: the relay is in no map before it knows who may use it.
          unsubscribe = members?.subscribe(msg => { ws.send(JSON.stringify(msg)) })
          broker.addBackend(backend)
          log?.info({ relay: hello.id, udp: hello.udp, udp6: hello.udp6, tls: hello.tls?.url, actor }, 'standalone relay connected')
          opts.onLinked?.(actor, hello)
          return
        }
        backend.onReply(validate(RelayLinkReply, raw, 'relay reply'))
      } catch (err) {
        refuse(isWarrenError(err) ? err.code : 'invalid_input', (err as Error).message)
      }
    })
    ws.on('close', () => {
      clearTimeout(helloTimer)
      unsubscribe?.()
      if (backend === undefined) return
      backend.failAll()
      opts.broker()?.removeBackend(backend)
      log?.warn({ relay: backend.info.id }, 'standalone relay disconnected; its pairs are revoked')
    })
  }

  return {
    handleUpgrade (req, socket, head) {
      if ((req.url ?? '').split('?')[0] !== RELAY_LINK_PATH) return false
      const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')
      if (m === null) {
        writeRawError(socket, 401, 'unauthenticated', 'a relay link needs a relay API key: "Authorization: Bearer wrnapi-..." (\'warren admin apikeys create --scope relay\' makes one)')
        return true
      }
      let actor: string
      try {
        actor = opts.authenticate(m[1]!)
      } catch (err) {
        writeRawError(socket, isWarrenError(err) ? err.status : 401, isWarrenError(err) ? err.code : 'invalid_api_key', (err as Error).message)
        return true
      }
      wss.handleUpgrade(req, socket, head, ws => { accept(ws, actor) })
      return true
    },
    async close () {
      for (const ws of wss.clients) ws.close(1001, 'shutting_down')
      await new Promise<void>(resolve => wss.close(() => resolve()))
    }
  }
}
