import { randomBytes } from 'node:crypto'
import { WebSocket, type RawData } from 'ws'
import {
  PROTOCOL_VERSION, MAP_DOMAIN, MapHello, ClientEndpoints, RelayRequest, RelayRelease, CallMeMaybe, Logout, validate, mapSigningPayload, checkProtocolVersion,
  isKeyExpired, WarrenError, checkRoutes, type ClientMessage, type HostAttrs, type Node
} from '@warren/protocol'
import type { MapLogger } from './types.js'
import { checkEndpoints } from './endpoints.js'
import { verifyMachineSignature } from './verify.js'

/**
 * MapCloseCode are the WebSocket close codes a map session ends with. A node reads the
 * `error` message sent just before for the reason; the code tells it whether retrying
 * can help (4401/4403/4426 cannot, 4409/4408/1001 can).
 */
export const MapCloseCode = {
  badMessage: 4400,
  unauthenticated: 4401,
  forbidden: 4403,
  helloTimeout: 4408,
  replaced: 4409,
  versionMismatch: 4426,
  shuttingDown: 1001
} as const

/** MapRefusal is why a map session ends: the error message's code and text, and the close code. */
export interface MapRefusal { code: string, message: string, closeCode: number }

/** HelloResult is a checked hello: the node it proves to be, with its endpoints, or a refusal. */
export type HelloResult = { node: Node } & Omit<HelloFacts, 'version'> | { refusal: MapRefusal }

/** HelloFacts are what a checked hello reports about the node: endpoints, advertised routes, protocol version, posture attributes. */
export interface HelloFacts { endpoints: string[], routes: string[], version: number, attrs?: HostAttrs }

/** Challenge is the server's first message on a socket; the hello must sign its nonce. */
export interface Challenge { nonce: string, text: string }

export function createChallenge (): Challenge {
  const nonce = randomBytes(24).toString('base64url')
  return { nonce, text: JSON.stringify({ type: 'challenge', version: PROTOCOL_VERSION, nonce }) }
}

/** mayConnect says whether a node may hold a map session: not expired by an admin or by its key. */
export function mayConnect (n: Node, now = Date.now()): boolean {
  return n.status !== 'expired' && !isKeyExpired(n.keyExpiry, now)
}

/** expiredRefusal is what an expired node hears before its session closes. */
export function expiredRefusal (n: Node): MapRefusal {
  return {
    code: 'node_expired',
    message: `node '${n.name}' has expired: log in again with 'warren up' (or join again with a new auth key)`,
    closeCode: MapCloseCode.forbidden
  }
}

/** deletedRefusal is what a deleted node hears before its session closes. */
export function deletedRefusal (n: Node): MapRefusal {
  return { code: 'node_deleted', message: `node '${n.name}' was deleted from the network; join again with an auth key to come back`, closeCode: MapCloseCode.forbidden }
}

export const REPLACED: MapRefusal = { code: 'session_replaced', message: 'another map session for this node started; this one is closed', closeCode: MapCloseCode.replaced }
export const SHUTTING_DOWN: MapRefusal = { code: 'shutting_down', message: 'the controller is shutting down; reconnect shortly', closeCode: MapCloseCode.shuttingDown }

function parse (data: RawData, isBinary: boolean): unknown {
  if (isBinary) throw Object.assign(new Error('map messages are JSON text frames, not binary'), { code: 'invalid_json' })
  const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8')
  try {
    return JSON.parse(text)
  } catch (err) {
    throw Object.assign(new Error(`map message is not valid JSON: ${(err as Error).message}`), { code: 'invalid_json' })
  }
}

/**
 * readClientMessage parses and validates one client message. It picks the schema by
 * `type` (a union's error would only say "expected union value") and checks a hello's
 * version first, so a newer node hears about the version rather than about a field it added.
 */
export function readClientMessage (data: RawData, isBinary: boolean): ClientMessage {
  const raw = parse(data, isBinary) as { type?: unknown, version?: unknown } | null
  const type = raw !== null && typeof raw === 'object' ? raw.type : undefined
  if (type === 'hello') {
    if (typeof raw!.version === 'number') checkProtocolVersion(raw!.version, 'this node')
    return validate(MapHello, raw, 'map hello')
  }
  if (type === 'endpoints') return validate(ClientEndpoints, raw, 'map endpoints message')
  if (type === 'relay-request') return validate(RelayRequest, raw, 'map relay request')
  if (type === 'relay-release') return validate(RelayRelease, raw, 'map relay release')
  if (type === 'call-me-maybe') return validate(CallMeMaybe, raw, 'map call-me-maybe')
  if (type === 'logout') return validate(Logout, raw, 'map logout')
  throw new WarrenError('invalid_input', `map message: /type: ${JSON.stringify(type)?.slice(0, 40) ?? 'missing'} is not a message a node may send; expected 'hello', 'endpoints', 'relay-request', 'relay-release', 'call-me-maybe' or 'logout'`, { field: '/type' })
}

/** unreadable turns what readClientMessage threw into the refusal that closes the socket. */
export function unreadable (err: unknown): MapRefusal {
  const code = (err as { code?: string }).code ?? 'invalid_input'
  return { code, message: (err as Error).message, closeCode: code === 'protocol_version' ? MapCloseCode.versionMismatch : MapCloseCode.badMessage }
}

/**
 * checkHello authenticates a hello: it must sign this socket's nonce with the machine
 * key of a registered node that may connect, and report well-formed endpoints and routes.
 */
export function checkHello (hello: MapHello, nonce: string, nodeByMachineKey: (machineKey: string) => Node | undefined): HelloResult {
  const unauthenticated = (code: string, message: string): HelloResult => ({ refusal: { code, message, closeCode: MapCloseCode.unauthenticated } })
  if (hello.nonce !== nonce) return unauthenticated('bad_nonce', 'hello signs a different nonce than this session\'s challenge; sign the nonce just received')
  if (!verifyMachineSignature(hello.machineKey, MAP_DOMAIN, mapSigningPayload(hello.nonce, hello.machineKey, hello.version), hello.signature)) {
    return unauthenticated('bad_signature', 'hello signature does not verify with the machine key it names; the node must sign the challenge with its own machine key')
  }
  const node = nodeByMachineKey(hello.machineKey)
  if (node === undefined) {
    return unauthenticated('unknown_node', 'no node is registered with this machine key (it may have been deleted); join again with an auth key')
  }
  if (!mayConnect(node)) return { refusal: expiredRefusal(node) }
  try {
    const facts: Omit<HelloFacts, 'version'> = { endpoints: checkEndpoints(hello.endpoints, 'hello.endpoints'), routes: checkRoutes(hello.routes ?? [], 'hello.routes') }
    if (hello.attrs !== undefined) facts.attrs = hello.attrs
    return { node, ...facts }
  } catch (err) {
    const code = (err as { code?: string }).code === 'bad_route' ? 'bad_route' : 'bad_endpoint'
    return { refusal: { code, message: (err as Error).message, closeCode: MapCloseCode.badMessage } }
  }
}

/** MapSocketHandlers are what a socket's handshake hands over to, once and after it succeeds. */
export interface MapSocketHandlers<S> {
  helloTimeoutMs: number
  nodeByMachineKey: (machineKey: string) => Node | undefined
  /** send sends the challenge */
  send: (ws: WebSocket, text: string) => void
  /** refuse sends the refusal's error and closes the socket */
  refuse: (ws: WebSocket, refusal: MapRefusal) => void
  /** start attaches an authenticated socket to its node's session, to which later messages belong */
  start: (ws: WebSocket, node: Node, hello: HelloFacts, resume?: { session: string, seq: number }) => S
  endpoints: (session: S, ws: WebSocket, endpoints: string[]) => void
  /** relayRequest: the node asks for a kernel-relay allocation toward a peer */
  relayRequest: (session: S, peer: string) => void
  /** relayRelease: the node no longer needs its kernel-relay allocation toward a peer */
  relayRelease: (session: S, peer: string) => void
  /** callMeMaybe: the node starts a direct-path discovery burst toward a peer */
  callMeMaybe: (session: S, peer: string) => void
  /** logout: an ephemeral node leaves for good */
  logout: (session: S) => void
  /** disconnect is called when an authenticated socket closes */
  disconnect: (session: S, ws: WebSocket) => void
  log?: MapLogger
}

/**
 * acceptMapSocket speaks the map protocol on a new socket: the challenge, a signed hello
 * within helloTimeoutMs (anything else first is refused), then endpoint reports, relay
 * requests and calls to peers only.
 */
export function acceptMapSocket<S> (ws: WebSocket, h: MapSocketHandlers<S>): void {
  const challenge = createChallenge()
  let session: S | null = null
  const helloTimer = setTimeout(() => {
    if (session === null) h.refuse(ws, { code: 'hello_timeout', message: `no signed hello within ${h.helloTimeoutMs} ms of the challenge`, closeCode: MapCloseCode.helloTimeout })
  }, h.helloTimeoutMs)
  ws.on('error', err => h.log?.debug({ err }, 'map socket error'))
  ws.on('close', () => {
    clearTimeout(helloTimer)
    if (session !== null) h.disconnect(session, ws)
  })
  ws.on('message', (data, isBinary) => {
    if (ws.readyState !== WebSocket.OPEN) return
    let msg: ClientMessage
    try {
      msg = readClientMessage(data, isBinary)
    } catch (err) {
      h.refuse(ws, unreadable(err))
      return
    }
    if (session === null) {
      if (msg.type !== 'hello') {
        h.refuse(ws, { code: 'unexpected_message', message: `the first map message must be a signed hello answering the challenge, not '${msg.type}'`, closeCode: MapCloseCode.unauthenticated })
        return
      }
      clearTimeout(helloTimer)
      const checked = checkHello(msg, challenge.nonce, h.nodeByMachineKey)
      if ('refusal' in checked) h.refuse(ws, checked.refusal)
      else session = h.start(ws, checked.node, { ...checked, version: msg.version }, msg.resume)
      return
    }
    if (msg.type === 'relay-request') {
      h.relayRequest(session, msg.peer)
      return
    }
    if (msg.type === 'relay-release') {
      h.relayRelease(session, msg.peer)
      return
    }
    if (msg.type === 'call-me-maybe') {
      h.callMeMaybe(session, msg.peer)
      return
    }
    if (msg.type === 'logout') {
      h.logout(session)
      return
    }
    if (msg.type !== 'endpoints') {
      h.refuse(ws, { code: 'unexpected_message', message: 'hello was already received on this session; reconnect to start another', closeCode: MapCloseCode.badMessage })
      return
    }
    h.endpoints(session, ws, msg.endpoints)
  })
  h.send(ws, challenge.text)
}
