/**
 * greeter-client: calls the greeter service (greeter-service.ts) by its node's name, twice:
 * once with the SDK's fetch and once with node:http and the SDK's Agent, the way an
 * existing HTTP client is moved onto the mesh without changing its code.
 *
 *   node greeter-client.js [NAME:PORT]      (default greeter:8080)
 *
 * NAME is the service node's mesh name (short `greeter` or full `greeter.warren.internal`)
 * or a mesh address. It talks to the daemon on $WARREN_SOCKET (default
 * /var/run/warren/warrend.sock). It prints each answer as `fetch: STATUS BODY` and
 * `http.get: STATUS BODY`, and exits 1 unless both are 200.
 */
import { get, type IncomingMessage } from 'node:http'
import { connect, isWarrenError } from '@warren/sdk'

const target = process.argv[2] ?? 'greeter:8080'
let url: URL
try {
  url = new URL(`http://${target}/`)
} catch {
  console.error(`'${target}' is not NAME:PORT, ADDRESS:PORT or [IPv6]:PORT (for example greeter:8080)`)
  process.exit(2)
}

const w = await connect()
let ok = true
try {
  // 1. fetch: like the global fetch, but its connections go over the mesh, so the URL
  //    can name a mesh node.
  const res = await w.fetch(url)
  const body = await res.text()
  console.log(`fetch: ${res.status} ${body.trim()}`)
  ok &&= res.status === 200

  // 2. node:http with the mesh Agent: any library that takes an `agent` works the same.
  const answer = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    get(url, { agent: w.httpAgent() }, (r: IncomingMessage) => {
      let text = ''
      r.setEncoding('utf8')
      r.on('data', (chunk: string) => { text += chunk })
      r.on('end', () => { resolve({ status: r.statusCode ?? 0, body: text }) })
      r.on('error', reject)
    }).on('error', reject)
  })
  console.log(`http.get: ${answer.status} ${answer.body.trim()}`)
  ok &&= answer.status === 200
} catch (e) {
  // Every mesh failure is a WarrenError whose code says why: ENOPEER (no such node, or
  // the policy hides it), EPEEROFFLINE, ENOTALLOWED (the policy forbids this port),
  // ECONNREFUSED (nothing listens), ETIMEDOUT, EDAEMON (no daemon on the socket).
  if (!isWarrenError(e)) throw e
  console.error(`greeter-client: ${e.code}: ${e.message}`)
  ok = false
} finally {
  // close ends the Agent's kept-alive connections so the process can exit.
  await w.close()
}
process.exitCode = ok ? 0 : 1
