import { X509Certificate } from 'node:crypto'
import { readFile, writeFile, rename, chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { isIP } from 'node:net'
import { generate } from 'selfsigned'
import { WarrenError, displayFingerprint } from '@warren/protocol'

/**
 * ServerTls is the certificate a Warren server (the controller, a standalone TLS relay)
 * serves. Clients pin `fingerprint` (the controller's is embedded in every auth key, a
 * relay's reaches nodes in the map), so a self-signed certificate is as good as a
 * public one and needs no CA.
 */
export interface ServerTls {
  cert: string
  key: string
  /** SHA-256 of the DER certificate, 64 lowercase hex digits */
  fingerprint: string
  /** the same fingerprint as colon-separated uppercase pairs, for people */
  displayFingerprint: string
  /** true when this start made a new certificate */
  generated: boolean
}

export interface LoadTlsOptions {
  stateDir: string
  /** host the server listens on; added to the certificate's names */
  host?: string
  /** the generated certificate's common name (default warren-controller) */
  commonName?: string
  /** PEM files given by the operator; used as they are instead of the generated pair */
  certFile?: string
  keyFile?: string
}

export const CERT_FILE = 'tls-cert.pem'
export const KEY_FILE = 'tls-key.pem'

/** certificateFingerprint is the SHA-256 fingerprint of a PEM certificate, as 64 lowercase hex. */
export function certificateFingerprint (certPem: string): string {
  return new X509Certificate(certPem).fingerprint256.replace(/:/g, '').toLowerCase()
}

/**
 * loadOrCreateTls returns the operator's certificate, or the one in the state dir, or
 * makes a self-signed one there on first start (EC P-256, 10 years) and keeps it.
 */
export async function loadOrCreateTls (opts: LoadTlsOptions): Promise<ServerTls> {
  if ((opts.certFile === undefined) !== (opts.keyFile === undefined)) {
    throw new WarrenError('bad_tls_options', 'give both --tls-cert and --tls-key, or neither (then a self-signed certificate is made in the state dir)')
  }
  if (opts.certFile !== undefined && opts.keyFile !== undefined) {
    const cert = await readPem(opts.certFile, '--tls-cert')
    const key = await readPem(opts.keyFile, '--tls-key')
    return describe(cert, key, false, opts.certFile)
  }
  const certPath = join(opts.stateDir, CERT_FILE)
  const keyPath = join(opts.stateDir, KEY_FILE)
  const existing = await readBoth(certPath, keyPath)
  if (existing !== null) return describe(existing.cert, existing.key, false, certPath)

  const made = await makeSelfSigned(opts.host, opts.commonName ?? 'warren-controller')
  // The key lands first and with 0600 from the start; the cert's presence marks a complete pair.
  await writeFile(`${keyPath}.tmp`, made.key, { mode: 0o600 })
  await chmod(`${keyPath}.tmp`, 0o600)
  await rename(`${keyPath}.tmp`, keyPath)
  await writeFile(`${certPath}.tmp`, made.cert, { mode: 0o644 })
  await rename(`${certPath}.tmp`, certPath)
  return describe(made.cert, made.key, true, certPath)
}

async function makeSelfSigned (host: string | undefined, commonName: string): Promise<{ cert: string, key: string }> {
  const names = new Set(['localhost', '127.0.0.1', '::1'])
  if (host !== undefined && host !== '' && host !== '0.0.0.0' && host !== '::') names.add(host.replace(/^\[|\]$/g, ''))
  const altNames = [...names].map(n => isIP(n) !== 0 ? { type: 7 as const, ip: n } : { type: 2 as const, value: n })
  const notBeforeDate = new Date(Date.now() - 60_000)
  const notAfterDate = new Date(notBeforeDate)
  notAfterDate.setFullYear(notAfterDate.getFullYear() + 10)
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames }
    ]
  })
  return { cert: pems.cert, key: pems.private }
}

async function readBoth (certPath: string, keyPath: string): Promise<{ cert: string, key: string } | null> {
  let cert: string
  try { cert = await readFile(certPath, 'utf8') } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw e
  }
  const key = await readPem(keyPath, 'the state dir TLS key')
  return { cert, key }
}

async function readPem (path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (e) {
    throw new WarrenError('bad_tls_file', `cannot read ${what} at ${path}: ${(e as Error).message}`, { cause: e })
  }
}

function describe (cert: string, key: string, generated: boolean, where: string): ServerTls {
  let fingerprint: string
  try {
    fingerprint = certificateFingerprint(cert)
  } catch (e) {
    throw new WarrenError('bad_tls_file', `${where} does not hold a PEM certificate: ${(e as Error).message}`, { cause: e })
  }
  return { cert, key, fingerprint, displayFingerprint: displayFingerprint(fingerprint), generated }
}
