import https from 'node:https'
import tls from 'node:tls'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import type { PeerCertificate } from 'node:tls'
import WebSocket from 'ws'
import { WarrenError, normalizeFingerprint, displayFingerprint } from '@warren/protocol'
import { sendJson, describeNetworkError, formatMs, DEFAULT_TIMEOUT_MS, type JsonTransport } from './http-json.js'

/** ControllerTransportInit says where the controller is and, for a self-signed one, which certificate to trust. */
export interface ControllerTransportInit {
  /** https://host:port (a bare host:port means https) */
  url: string
  /** the controller certificate's SHA-256 fingerprint (hex, colons allowed, or the base32 pin) */
  fingerprint?: string
  /** per-request and handshake timeout in milliseconds */
  timeoutMs?: number
}

/**
 * ControllerTransport talks to the controller over HTTPS and WebSocket. With a pin, the
 * only certificate it accepts is the one with that fingerprint, whatever its names are;
 * without one, it uses this machine's normal CA verification.
 */
export interface ControllerTransport extends JsonTransport {
  /** url is the normalized base URL (https://host:port, no trailing slash) */
  readonly url: string
  /** fingerprint is the pin in 64 lowercase hex digits, when there is one */
  readonly fingerprint?: string
  /** webSocket opens wss://<host><path> with the same trust as `request` */
  webSocket(path: string, opts?: WebSocket.ClientOptions): WebSocket
  /**
   * upgrade sends `GET <path>` with `Upgrade: <protocol>` and, on `101 Switching
   * Protocols`, resolves with the TLS socket, now a plain byte stream (same trust as
   * `request`). Any other answer rejects with code upgrade_refused and the HTTP status.
   */
  upgrade(path: string, protocol: string): Promise<Duplex>
}

/** CertificateProbe is what one unverified TLS handshake with the controller tells us. */
export interface CertificateProbe {
  fingerprint: string
  /** PEM of every certificate the server presented, leaf first */
  chainPem: string[]
}

/** normalizeControllerUrl accepts `https://h:p`, `h:p` or `wss://h:p` and returns `https://h:p`. */
export function normalizeControllerUrl (raw: string): URL {
  let s = String(raw).trim()
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) s = `https://${s}`
  let u: URL
  try { u = new URL(s) } catch {
    throw new WarrenError('bad_url', `controller URL '${raw}' is not a URL: use https://HOST:PORT as printed by 'warren controller serve'`, { field: 'controller' })
  }
  if (u.protocol === 'wss:') u.protocol = 'https:'
  if (u.protocol !== 'https:') {
    throw new WarrenError('bad_url', `controller URL '${raw}' must use https:// (control traffic is always encrypted)`, { field: 'controller' })
  }
  u.search = ''
  u.hash = ''
  return u
}

function toPem (raw: Buffer): string {
  const b64 = raw.toString('base64').match(/.{1,64}/g)!.join('\n')
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`
}

function fingerprintOf (cert: PeerCertificate): string {
  return String(cert.fingerprint256 ?? '').replace(/:/g, '').toLowerCase()
}

function mismatch (url: string, expected: string, got: string): WarrenError {
  return new WarrenError('fingerprint_mismatch',
    `controller at ${url} presented a certificate with fingerprint ${displayFingerprint(got)}, ` +
    `but ${displayFingerprint(expected)} was expected; ` +
    'use the key printed by \'warren admin keys create\' (or \'apikeys create\') for this controller, ' +
    'or pass the fingerprint that \'warren controller serve\' prints with --fingerprint', { status: 495 })
}

/**
 * probeCertificate makes one TLS handshake without verification, sends nothing, and
 * returns the presented certificate chain. Only a caller that compares the fingerprint
 * with a pin may trust the result.
 */
export async function probeCertificate (url: string | URL, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<CertificateProbe> {
  const u = typeof url === 'string' ? normalizeControllerUrl(url) : url
  const where = `controller at ${u.origin}`
  return await new Promise<CertificateProbe>((resolve, reject) => {
    const host = u.hostname.replace(/^\[|\]$/g, '')
    const sock = tls.connect({
      host,
      port: Number(u.port === '' ? 443 : u.port),
      rejectUnauthorized: false,
      ...(net.isIP(host) === 0 ? { servername: host } : {})
    })
    const timer = setTimeout(() => sock.destroy(new WarrenError('timeout', `${where} did not complete a TLS handshake within ${formatMs(timeoutMs)}`, { status: 504 })), timeoutMs)
    sock.once('secureConnect', () => {
      clearTimeout(timer)
      const chainPem: string[] = []
      let cert: tls.DetailedPeerCertificate | undefined = sock.getPeerCertificate(true)
      const seen = new Set<string>()
      while (cert?.raw !== undefined && !seen.has(fingerprintOf(cert))) {
        seen.add(fingerprintOf(cert))
        chainPem.push(toPem(cert.raw))
        cert = cert.issuerCertificate
      }
      const leaf = sock.getPeerCertificate()
      sock.destroy()
      if (leaf?.raw === undefined) reject(new WarrenError('tls_error', `${where} presented no certificate`, { status: 502 }))
      else resolve({ fingerprint: fingerprintOf(leaf), chainPem })
    })
    sock.once('error', e => { clearTimeout(timer); reject(describeNetworkError(e, where)) })
  })
}

/**
 * PinnedAgent opens TLS connections that trust only the pinned certificate. The first
 * connection waits for a probe (agents may create sockets asynchronously), so both
 * `request` and `webSocket` can be used right away.
 */
class PinnedAgent extends https.Agent {
  private trusted?: Promise<string[]>

  constructor (readonly url: URL, readonly pin: string, readonly timeoutMs: number) {
    super({ keepAlive: false, maxCachedSessions: 0 })
  }

  /** trustedCa probes once; a failed probe is forgotten so that the next call tries again. */
  private trustedCa (): Promise<string[]> {
    if (this.trusted !== undefined) return this.trusted
    const trusted = probeCertificate(this.url, this.timeoutMs).then(p => {
      if (p.fingerprint !== this.pin) throw mismatch(this.url.origin, this.pin, p.fingerprint)
      // The system roots stay so that a pinned certificate from a public CA still verifies.
      return [...tls.rootCertificates, ...p.chainPem]
    })
    this.trusted = trusted
    trusted.catch(() => { if (this.trusted === trusted) this.trusted = undefined })
    return trusted
  }

  /**
   * createConnection hands the socket over only after a verified handshake. A chain
   * that no longer verifies means the controller's certificate changed since the probe:
   * probe again so that the error says which fingerprint it has now.
   */
  override createConnection (options: tls.ConnectionOptions, cb: (err: Error | null, s?: Duplex) => void): Duplex | undefined {
    const { pin, url, timeoutMs } = this
    this.trustedCa().then(ca => {
      const sock = tls.connect({
        ...options,
        ca,
        rejectUnauthorized: true,
        checkServerIdentity: (_host, cert) => {
          const got = fingerprintOf(cert)
          return got === pin ? undefined : mismatch(url.origin, pin, got)
        }
      })
      sock.setTimeout(timeoutMs, () => {
        sock.destroy(new WarrenError('timeout', `controller at ${url.origin} did not complete a TLS handshake within ${formatMs(timeoutMs)}`, { status: 504 }))
      })
      const onError = (e: NodeJS.ErrnoException): void => {
        if (!isChainError(e)) { cb(e); return }
        this.trusted = undefined
        probeCertificate(url, timeoutMs).then(p => { cb(p.fingerprint !== pin ? mismatch(url.origin, pin, p.fingerprint) : e) }, () => { cb(e) })
      }
      sock.once('error', onError)
      sock.once('secureConnect', () => {
        sock.off('error', onError)
        sock.setTimeout(0)
        cb(null, sock)
      })
    }, (e: unknown) => { cb(e as Error) })
    return undefined
  }
}

function isChainError (e: unknown): boolean {
  return /SELF_SIGNED|UNABLE_TO_VERIFY_LEAF|UNABLE_TO_GET_ISSUER|CERT_/.test((e as NodeJS.ErrnoException)?.code ?? '')
}

function describeTlsError (e: unknown, where: string): WarrenError {
  const code = (e as NodeJS.ErrnoException)?.code ?? ''
  if (/SELF_SIGNED|UNABLE_TO_VERIFY_LEAF|UNABLE_TO_GET_ISSUER/.test(code)) {
    return new WarrenError('untrusted_certificate',
      `${where} presented a certificate this machine does not trust (${code}); ` +
      'pass the fingerprint that \'warren controller serve\' prints with --fingerprint, or use a key that embeds it', { status: 495, cause: e })
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new WarrenError('untrusted_certificate', `${where} presented a certificate for another host name; pin it with --fingerprint or use the name on the certificate`, { status: 495, cause: e })
  }
  return describeNetworkError(e, where)
}

/** createControllerTransport makes a transport to the controller at `url`, pinned when `fingerprint` is given. */
export function createControllerTransport (init: ControllerTransportInit): ControllerTransport {
  const base = normalizeControllerUrl(init.url)
  // A base path (a controller behind a reverse proxy at /warren) prefixes every request.
  const basePath = base.pathname.replace(/\/+$/, '')
  const url = base.origin + basePath
  const pin = init.fingerprint === undefined || init.fingerprint === '' ? undefined : normalizeFingerprint(init.fingerprint)
  const timeoutMs = init.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const agent = pin === undefined ? new https.Agent({ keepAlive: false }) : new PinnedAgent(base, pin, timeoutMs)
  const where = `controller at ${url}`

  return {
    url,
    ...(pin !== undefined ? { fingerprint: pin } : {}),
    async request (method, path, body, headers) {
      try {
        return await sendJson((o, cb) => https.request(o, cb), {
          method,
          host: base.hostname.replace(/^\[|\]$/g, ''),
          port: base.port === '' ? 443 : Number(base.port),
          path: basePath + path,
          agent,
          ...(headers !== undefined ? { headers } : {})
        }, body, where, timeoutMs)
      } catch (e) {
        throw describeTlsError((e as Error).cause ?? e, where)
      }
    },
    async upgrade (path, protocol) {
      return await new Promise<Duplex>((resolve, reject) => {
        const req = https.request({
          method: 'GET',
          host: base.hostname.replace(/^\[|\]$/g, ''),
          port: base.port === '' ? 443 : Number(base.port),
          path: basePath + path,
          agent,
          headers: { Connection: 'Upgrade', Upgrade: protocol }
        })
        req.setTimeout(timeoutMs, () => req.destroy(new WarrenError('timeout', `${where} did not answer the ${protocol} upgrade at ${path} within ${formatMs(timeoutMs)}`, { status: 504 })))
        req.on('upgrade', (_res, socket, head) => {
          socket.setTimeout(0)
          // What goes over an upgraded stream is often small and latency-bound (relayed ACKs).
          socket.setNoDelay(true)
          if (head.length > 0) socket.unshift(head)
          resolve(socket)
        })
        req.on('response', res => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => { if (body.length < 2000) body += c })
          res.on('end', () => {
            reject(new WarrenError('upgrade_refused', `${where} refused the ${protocol} upgrade at ${path} (HTTP ${res.statusCode ?? '?'}): ${body.trim().slice(0, 500) || 'no reason given'}`, { status: res.statusCode ?? 502 }))
          })
        })
        req.on('error', e => reject(describeTlsError((e as Error).cause ?? e, where)))
        req.end()
      })
    },
    webSocket (path, opts = {}) {
      const wsUrl = new URL(basePath + path, base)
      wsUrl.protocol = 'wss:'
      return new WebSocket(wsUrl, { handshakeTimeout: timeoutMs, ...opts, agent })
    },
    close () { agent.destroy() }
  }
}
