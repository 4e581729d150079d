import { sanitizeHostname } from '@warren/protocol'

/**
 * uniqueNodeName turns a hostname into a DNS-safe name that no other node has:
 * `laptop`, then `laptop-1`, `laptop-2`, ... (shortened so the result stays one label).
 */
export function uniqueNodeName (hostname: string, isTaken: (name: string) => boolean): string {
  const base = sanitizeHostname(hostname)
  if (!isTaken(base)) return base
  for (let i = 1; ; i++) {
    const suffix = `-${i}`
    const stem = base.slice(0, 63 - suffix.length).replace(/-+$/, '')
    const name = `${stem === '' ? 'node' : stem}${suffix}`
    if (!isTaken(name)) return name
  }
}
