import { request } from 'node:http'
import type { Duplex } from 'node:stream'
import WebSocket from 'ws'
import {
  PROTOCOL_VERSION, RELAY_DOMAIN, TLS_RELAY_PATH, TLS_RELAY_UPGRADE, RelayFrameType, signMessage, relaySigningPayload,
  encodeRelayPeer, readRelayIndex, readRelayBatchSize, decodeRelayControlText, fromBase64, toBase64, type MachineKeyPair
} from '@warren/protocol'
import { createRelayLink, type RelayLink } from '@warren/sdk/transport'

/**
 * A TLS relay client for tests of the relay itself, over plain HTTP on loopback (the
 * carrier is the same byte stream once upgraded): it signs the challenge, names peers
 * and records what it receives and every error the relay sends.
 */

/** RelayTestClient is one node's connection to a TLS relay under test. */
export interface RelayTestClient {
  link: RelayLink
  /** packets received, with the sender's key as the relay announced it (and the packet size of a BATCH frame) */
  got: Array<{ from: string, packet: number[], batchSize?: number }>
  errors: Array<{ code: string, message: string }>
  welcomed: Promise<void>
  closed: Promise<void>
  isClosed: () => boolean
  /** send names `peer` with index `index` (once) and sends a packet to it */
  send: (index: number, peerWgKey: string, packet: Uint8Array) => void
  /** sendBatch names `peer` (once) and sends it packets of `size` bytes (the last may be shorter) in one BATCH frame */
  sendBatch: (index: number, peerWgKey: string, size: number, packets: Uint8Array) => void
}

/** openRelayStream opens the framed stream at the relay on 127.0.0.1:port. */
export async function openRelayStream (port: number): Promise<Duplex> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: TLS_RELAY_PATH, headers: { Connection: 'Upgrade', Upgrade: TLS_RELAY_UPGRADE } })
    req.on('upgrade', (_res, socket, head) => {
      if (head.length > 0) socket.unshift(head)
      resolve(socket)
    })
    req.on('response', res => reject(new Error(`no upgrade: HTTP ${res.statusCode ?? '?'}`)))
    req.on('error', reject)
    req.end()
  })
}

/** openWebSocket does not wait for 'open': the challenge may come in the same read as the 101, so the link must listen first. */
function openWebSocket (port: number): WebSocket {
  return new WebSocket(`ws://127.0.0.1:${port}${TLS_RELAY_PATH}`)
}

/** connectRelayTestClient connects as `machine` (signing with `signWith` to test forgeries). */
export async function connectRelayTestClient (port: number, machine: MachineKeyPair, opts: { websocket?: boolean, signWith?: MachineKeyPair, batch?: boolean } = {}): Promise<RelayTestClient> {
  const carrier = opts.websocket === true ? openWebSocket(port) : await openRelayStream(port)
  const inbound = new Map<number, string>()
  const named = new Set<number>()
  let welcome!: () => void
  let done!: () => void
  let isClosed = false
  const c: RelayTestClient = {
    link: undefined as unknown as RelayLink,
    got: [],
    errors: [],
    welcomed: new Promise(resolve => { welcome = resolve }),
    closed: new Promise(resolve => { done = resolve }),
    isClosed: () => isClosed,
    send (index, peerWgKey, packet) {
      name(index, peerWgKey)
      c.link.sendData(index, packet)
    },
    sendBatch (index, peerWgKey, size, packets) {
      name(index, peerWgKey)
      c.link.sendBatch(index, size, packets)
    }
  }
  function name (index: number, peerWgKey: string): void {
    if (named.has(index)) return
    named.add(index)
    c.link.sendFrame(encodeRelayPeer(index, fromBase64(peerWgKey, 32)!))
  }
  c.link = createRelayLink(carrier, {
    onFrame (type, body) {
      if (type === RelayFrameType.Peer) inbound.set(readRelayIndex(body), toBase64(body.subarray(2)))
      if (type === RelayFrameType.Data) c.got.push({ from: inbound.get(readRelayIndex(body)) ?? '?', packet: [...body.subarray(2)] })
      if (type === RelayFrameType.Batch) c.got.push({ from: inbound.get(readRelayIndex(body)) ?? '?', packet: [...body.subarray(4)], batchSize: readRelayBatchSize(body) })
      if (type !== RelayFrameType.Control) return
      const msg = JSON.parse(decodeRelayControlText(body)) as { type: string, nonce: string, code: string, message: string }
      if (msg.type === 'challenge') {
        const signer = opts.signWith ?? machine
        c.link.sendControl({ type: 'hello', version: PROTOCOL_VERSION, machineKey: machine.publicKey, nonce: msg.nonce, signature: signMessage(signer.secretKey, RELAY_DOMAIN, relaySigningPayload(msg.nonce, machine.publicKey, PROTOCOL_VERSION)), ...(opts.batch === true ? { batch: true } : {}) })
      } else if (msg.type === 'welcome') welcome()
      else c.errors.push({ code: msg.code, message: msg.message })
    },
    onClose () { isClosed = true; done() }
  })
  return c
}
