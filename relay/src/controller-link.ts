import { RelayLinkCommand, PROTOCOL_VERSION, ErrorBody, parseJson, validate, type RelayLinkHello, type RelayLinkReply } from '@warren/protocol'
import type { UdpRelay, RelayLogger } from './udp-relay.js'
import type { TlsRelay } from './tls-relay.js'
import type { MirroredMembers } from './relay-members.js'

/**
 * LinkSocket is the control connection as the link needs it (a WebSocket to the
 * controller's RELAY_LINK_PATH with a relay-scoped API key; the CLI opens it with the
 * pinned transport and webSocketLinkSocket). Callbacks, so any WebSocket library fits
 * behind a few lines.
 */
export interface LinkSocket {
  send: (text: string) => void
  close: () => void
  onOpen: (h: () => void) => void
  onMessage: (h: (text: string) => void) => void
  /** onClose gets why the connection ended, if known */
  onClose: (h: (why: string) => void) => void
}

/**
 * LinkWebSocket is the part of a `ws` WebSocket (as the SDK's pinned transport opens it)
 * that webSocketLinkSocket uses.
 */
export interface LinkWebSocket {
  send: (text: string) => void
  close: () => void
  terminate: () => void
  on: ((event: 'open', h: () => void) => unknown) &
  ((event: 'message', h: (data: Buffer) => void) => unknown) &
  ((event: 'error', h: (err: Error) => void) => unknown) &
  ((event: 'close', h: (code: number) => void) => unknown) &
  ((event: 'unexpected-response', h: (req: { destroy: () => void }, res: AsyncIterable<Buffer> & { statusCode?: number }) => void) => unknown)
}

/**
 * webSocketLinkSocket adapts a WebSocket to RELAY_LINK_PATH into a LinkSocket. When the
 * controller refuses the upgrade (a wrong, expired or admin key), the reason it gives in
 * the body is what onClose reports, so the relay's log says how to fix it.
 */
export function webSocketLinkSocket (ws: LinkWebSocket): LinkSocket {
  let lastError = ''
  let refused = ''
  ws.on('error', e => { lastError = e.message })
  ws.on('unexpected-response', (req, res) => {
    readRefusal(res).then(why => { refused = why }, () => {}).finally(() => { req.destroy(); ws.terminate() })
  })
  return {
    send: text => { ws.send(text) },
    close: () => { ws.close() },
    onOpen: h => { ws.on('open', h) },
    onMessage: h => { ws.on('message', d => { h(d.toString('utf8')) }) },
    onClose: h => { ws.on('close', code => { h(refused !== '' ? refused : lastError !== '' ? lastError : `closed with ${code}`) }) }
  }
}

/** readRefusal reads the controller's answer to a refused upgrade as one line. */
async function readRefusal (res: AsyncIterable<Buffer> & { statusCode?: number }): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of res) {
    size += c.length
    if (size > 16 * 1024) break
    chunks.push(c)
  }
  const status = res.statusCode ?? 0
  try {
    const { code, message } = validate(ErrorBody, JSON.parse(Buffer.concat(chunks).toString('utf8'))).error
    return `the controller refused this relay (HTTP ${status}, ${code}): ${message}`
  } catch {
    return `the controller refused this relay with HTTP ${status}`
  }
}

export interface ControllerLinkOptions {
  /** the kernel UDP relay the controller allocates pairs on; absent for a relay that runs only a TLS relay */
  relay?: UdpRelay
  /** the relay's X25519 public key, when it runs no UDP relay (which holds the key otherwise) */
  publicKey?: string
  /** the relay's id in maps and grants */
  id: string
  openSocket: () => LinkSocket
  /**
   * tls is this host's TLS relay, if it runs one: announced with its URL and certificate
   * fingerprint, its members kept as the controller says (and forgotten while the link is down)
   */
  tls?: { url: string, fingerprint: string, relay: TlsRelay, members: MirroredMembers }
  /** first reconnect delay (default 1 s; doubles to 30 s) */
  retryMs?: number
  log?: RelayLogger
}

/** ControllerLink is a standalone relay's connection to its controller. */
export interface ControllerLink {
  /** connected says whether the controller has welcomed this relay */
  connected: () => boolean
  close: () => void
}

/**
 * runControllerLink keeps a standalone relay connected to its controller: it announces
 * the relay, then carries out the broker's allocate, renew and release commands, and
 * keeps the TLS relay's members as the controller lists them. The relay forwards only
 * while the controller can revoke: when the link drops, every allocation is released and
 * every TLS relay member forgotten (their connections cut) at once (the controller
 * revokes the pairs on its side too), and the link reconnects with backoff.
 */
export function runControllerLink (opts: ControllerLinkOptions): ControllerLink {
  const { relay, tls, log } = opts
  const publicKey = relay?.publicKey ?? opts.publicKey ?? ''
  if (publicKey === '') throw new Error('runControllerLink needs the relay\'s public key when it runs no UDP relay')
  const first = opts.retryMs ?? 1000
  let delay = first
  let welcomed = false
  let closed = false
  let socket: LinkSocket | undefined
  let timer: NodeJS.Timeout | undefined

  async function releaseAll (): Promise<void> {
    tls?.members.clear()
    tls?.relay.meshChanged()
    await Promise.all((relay?.allocations() ?? []).map(async a => await relay!.release(a.id).catch(() => {})))
  }

  async function handle (s: LinkSocket, cmd: RelayLinkCommand): Promise<void> {
    const reply = (r: Omit<RelayLinkReply, 'type'>): void => { s.send(JSON.stringify({ type: 'relay-reply', ...r } satisfies RelayLinkReply)) }
    switch (cmd.type) {
      case 'relay-welcome':
        welcomed = true
        delay = first
        log?.info({ id: opts.id }, 'controller accepted this relay')
        return
      case 'relay-allocate':
        try {
          if (relay === undefined) throw new Error(`relay '${opts.id}' runs no UDP relay (it was started with --no-udp-relay)`)
          const a = await relay.allocate({ nodeKeys: [cmd.nodeKeys[0]!, cmd.nodeKeys[1]!], expiresAt: cmd.expiresAt })
          reply({ req: cmd.req, ok: true, allocation: { id: a.id, ports: a.sides.map(x => x.port) } })
        } catch (e) {
          reply({ req: cmd.req, ok: false, message: (e as Error).message.slice(0, 1000) })
        }
        return
      case 'relay-members':
        if (tls !== undefined) tls.relay.meshChanged(tls.members.apply(cmd))
        return
      case 'relay-renew':
        relay?.renew(cmd.allocation, cmd.expiresAt)
        return
      case 'relay-release':
        await relay?.release(cmd.allocation).catch(() => {})
        reply({ req: cmd.req, ok: true })
        return
      case 'error':
        log?.warn({ code: cmd.code, message: cmd.message }, 'controller refused this relay')
    }
  }

  function connect (): void {
    if (closed) return
    const s = socket = opts.openSocket()
    s.onOpen(() => {
      const hello: RelayLinkHello = {
        type: 'relay-hello',
        version: PROTOCOL_VERSION,
        id: opts.id,
        ...(relay !== undefined ? { udp: relay.endpoint } : {}),
        ...(relay?.endpoint6 !== undefined ? { udp6: relay.endpoint6 } : {}),
        key: publicKey,
        ...(tls !== undefined ? { tls: { url: tls.url, fingerprint: tls.fingerprint } } : {})
      }
      s.send(JSON.stringify(hello))
    })
    s.onMessage(text => {
      let cmd: RelayLinkCommand
      try {
        cmd = parseJson(RelayLinkCommand, text, 'relay link command')
      } catch (e) {
        log?.warn({ err: (e as Error).message }, 'controller sent a malformed relay command; reconnecting')
        s.close()
        return
      }
      void handle(s, cmd)
    })
    s.onClose(why => {
      if (socket !== s) return
      socket = undefined
      const was = welcomed
      welcomed = false
      // Fail closed: nothing is forwarded that the controller could no longer revoke.
      void releaseAll()
      if (closed) return
      log?.warn({ why, retryMs: delay, wasConnected: was }, 'relay link to the controller closed; released every allocation and TLS relay member; reconnecting')
      timer = setTimeout(connect, delay)
      delay = Math.min(30_000, delay * 2)
    })
  }

  connect()
  return {
    connected: () => welcomed,
    close () {
      closed = true
      clearTimeout(timer)
      socket?.close()
    }
  }
}
