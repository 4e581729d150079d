/**
 * greeter-service: an HTTP service on the mesh that knows who calls it without a login.
 *
 * It serves one port on this node's mesh addresses only. For every connection the local
 * Warren daemon tells it which node, user and tags are on the other end (the controller
 * vouches for that identity, so a caller cannot forge it), and the service answers
 * `Hello alice (node laptop)` or refuses with 403 a caller that carries a tag it does not
 * trust. Users' own nodes carry no tags and are always greeted.
 *
 *   node greeter-service.js [--port 8080] [--trust tag:web] [--trust tag:prod] ...
 *
 * It talks to the daemon on $WARREN_SOCKET (default /var/run/warren/warrend.sock), which
 * is root-only: run it as root, or as a user that may open that socket. The policy must
 * let callers reach this node's port (see setup-mesh.ts).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { parseArgs } from 'node:util'
import { connect, isWarrenError, type Identity } from '@warren/sdk'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8080' },
    // Tags this service trusts; a tagged caller with any other tag gets 403.
    trust: { type: 'string', multiple: true, default: [] }
  }
})
const port = Number(values.port)
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`--port '${values.port}' is not a TCP port: give a number from 1 to 65535`)
  process.exit(2)
}
const trusted = new Set(values.trust)

/** untrustedTags lists the caller's tags this service does not trust (none for a user's own node). */
function untrustedTags (who: Identity): string[] {
  return who.tags.filter(tag => !trusted.has(tag))
}

/** describe names the caller: its user (or its tags, for a tagged node) and its node. */
function describe (who: Identity): string {
  const owner = who.user ?? who.tags.join(', ')
  return `${owner} (node ${who.node.name}${who.user !== undefined && who.tags.length > 0 ? `, tags ${who.tags.join(', ')}` : ''})`
}

// connect() waits until the daemon is up and has its map; it fails with EDAEMON when no
// daemon answers, with a message that says what to do.
const w = await connect()

// The mesh hands each caller's identity over with its connection ('connection' below)
// before the HTTP server sees the socket; keep it for the requests on that connection.
// (Another way: `await w.whois(req.socket)` asks the daemon on each request.)
const callers = new WeakMap<Socket, Identity>()

const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  const who = callers.get(req.socket)
  res.setHeader('content-type', 'text/plain; charset=utf-8')
  if (who === undefined) {
    // Not reachable with w.listen (it closes connections the mesh does not vouch for),
    // but a service should fail closed if it is ever wired up differently.
    res.statusCode = 403
    res.end('Forbidden: this service answers only callers on the Warren mesh\n')
    return
  }
  const refused = untrustedTags(who)
  if (refused.length > 0) {
    res.statusCode = 403
    res.end(`Forbidden: ${describe(who)} carries ${refused.join(', ')}, which this service does not trust\n`)
    return
  }
  res.end(`Hello ${describe(who)}!\n`)
})

// listen binds the port on this node's mesh addresses only (not the LAN, not localhost).
const mesh = await w.listen(port, server)
mesh.on('connection', (sock, who) => { callers.set(sock, who) })
mesh.on('error', err => { console.error(`greeter: ${isWarrenError(err) ? `${err.code}: ` : ''}${err.message}`) })
console.log(`greeter listening on ${mesh.addresses.join(' and ')}; trusted tags: ${trusted.size > 0 ? [...trusted].join(', ') : 'none'}`)

// Stop cleanly: close the mesh listeners and the daemon connection.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void w.close().then(() => process.exit(0))
  })
}
