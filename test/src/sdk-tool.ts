/**
 * sdk-tool runs the SDK inside a node's namespace, for end-to-end tests of `@warren/sdk`:
 *
 *   sdk-tool.js serve SOCKET PORT    listen on the mesh with an http.Server that answers each
 *                                    request with the caller's identity (JSON); prints `listening`
 *   sdk-tool.js dial SOCKET TARGET [TEXT]
 *                                    dial NAME:PORT; prints {"ok":true,"ms":..} or {"code":..,"ms":..};
 *                                    with TEXT, sends it and adds what came back before the far end closed ("answer")
 *   sdk-tool.js fetch SOCKET URL     fetch over the mesh; prints {"status":..,"body":..} or {"code":..}
 *   sdk-tool.js embed STATEDIR URL PORT
 *                                    (controller URL and auth key in $WARREN_CONTROLLER, $WARREN_AUTH_KEY)
 *                                    run an ephemeral node in this process with createNode, serve PORT
 *                                    on it like `serve`, and PORT+1 without a server (each caller gets its
 *                                    identity and what it sent, as JSON); fetch URL over it and print
 *                                    {"status":..,"body":..}; print {"connection":{"name","user","tags"}} per
 *                                    verified caller; on SIGTERM close the node, print {"closed":true} and exit by itself
 */
import { createServer, type Server } from 'node:http'
import type { Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { connect, createNode, type Identity, type Warren } from '@warren/sdk'

export const SDK_TOOL_ARGV = [process.execPath, fileURLToPath(import.meta.url)]

const print = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n') }

/** identityServer answers every request with the caller's identity, or 403 with the code whois gave. */
function identityServer (w: Warren): Server {
  return createServer((req, res) => {
    w.whois(req.socket).then(
      (who: Identity) => res.end(JSON.stringify(who)),
      (e: { code?: string }) => { res.statusCode = 403; res.end(JSON.stringify({ code: e.code })) })
  })
}

/** embed runs an app's own ephemeral node: it serves, fetches, and closes on SIGTERM. */
async function embed (stateDir: string, url: string, port: number): Promise<void> {
  // A listener that stays: execa re-raises a signal that only its own handlers saw, which would end close() early.
  const stop = new Promise(resolve => process.on('SIGTERM', resolve))
  const node = await createNode({ controller: process.env.WARREN_CONTROLLER!, authKey: process.env.WARREN_AUTH_KEY!, stateDir, hostname: 'embedded', ephemeral: true })
  const srv = await node.listen(port, identityServer(node))
  const plain = await node.listen(port + 1)
  for (const s of [srv, plain]) s.on('connection', (_sock, peer) => print({ connection: { name: peer.node.name, user: peer.user, tags: peer.tags } }))
  // Without a server the app reads the socket itself, as it would a net.Server's.
  plain.on('connection', (sock, peer) => { sock.once('data', d => sock.end(JSON.stringify({ node: peer.node, user: peer.user, tags: peer.tags, read: String(d) }))) })
  print({ self: node.self.name, interface: (await node.status()).interfaceName, addresses: [...srv.addresses, ...plain.addresses] })
  try {
    const res = await node.fetch(url)
    print({ status: res.status, body: await res.text() })
  } catch (e) {
    print({ code: (e as { code?: string }).code, message: (e as Error).message })
  }
  process.stdout.write('listening\n')
  await stop
  await node.close()
  print({ closed: true })
}

/** answer collects what the far end sends until it closes; ETIMEDOUT if it does not within timeoutMs. */
async function answer (sock: Socket, timeoutMs: number): Promise<string> {
  return await new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => { sock.destroy(); reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })) }, timeoutMs)
    sock.on('data', d => { text += String(d) })
    sock.once('close', () => { clearTimeout(timer); resolve(text) })
  })
}

async function main (cmd: string | undefined, socket: string | undefined, arg: string | undefined): Promise<void> {
  if (socket === undefined || arg === undefined) throw new Error('usage: sdk-tool serve|dial|fetch SOCKET ARG | embed STATEDIR URL PORT')
  if (cmd === 'embed') {
    await embed(socket, arg, Number(process.argv[5]))
    return
  }
  if (cmd === 'serve') {
    const w = await connect({ socket })
    const srv = await w.listen(Number(arg), identityServer(w))
    srv.on('connection', (_sock, peer) => print({ connection: peer.node.name }))
    print({ addresses: srv.addresses })
    process.stdout.write('listening\n')
    process.once('SIGTERM', () => { void w.close().then(() => process.exit(0)) })
    return
  }
  const started = performance.now()
  const ms = (): number => Math.round(performance.now() - started)
  let w: Awaited<ReturnType<typeof connect>> | undefined
  try {
    w = await connect({ socket })
    if (cmd === 'dial') {
      const s = await w.dial(arg, { timeoutMs: 15_000 })
      const text = process.argv[5]
      if (text === undefined) {
        s.destroy()
        print({ ok: true, ms: ms() })
      } else {
        s.end(text)
        print({ ok: true, answer: await answer(s, 15_000), ms: ms() })
      }
    } else if (cmd === 'fetch') {
      const res = await w.fetch(arg)
      print({ status: res.status, body: await res.text(), ms: ms() })
    } else {
      throw new Error(`unknown command '${cmd ?? ''}'`)
    }
  } catch (e) {
    print({ code: (e as { code?: string }).code, message: (e as Error).message, ms: ms() })
  }
  await w?.close()
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main(process.argv[2], process.argv[3], process.argv[4])
