import { sanitizeHostname } from '@warren/protocol'

/**
 * uniqueName gives `base` if it is free, else `base-1`, `base-2`, ... shortened to `max`
 * characters (`fallback` stands in for a stem that shortening left empty).
 */
export function uniqueName (base: string, isTaken: (name: string) => boolean, max: number, fallback: string): string {
  if (!isTaken(base)) return base
  for (let i = 1; ; i++) {
    const suffix = `-${i}`
    const stem = base.slice(0, max - suffix.length).replace(/[-._]+$/, '')
    const name = `${stem === '' ? fallback : stem}${suffix}`
    if (!isTaken(name)) return name
  }
}

/**
 * uniqueNodeName turns a hostname into a DNS-safe name that no other node has:
 * `laptop`, then `laptop-1`, `laptop-2`, ... (shortened so the result stays one label).
 */
export function uniqueNodeName (hostname: string, isTaken: (name: string) => boolean): string {
  return uniqueName(sanitizeHostname(hostname), isTaken, 63, 'node')
}

/**
 * userNameFor turns what an identity provider calls a person (the local part of the
 * email, or a preferred username) into a user name: lowercase letters, digits, `.`, `_`
 * and `-`, starting and ending with a letter or digit, at most 64 characters.
 */
export function userNameFor (hint: string): string {
  const name = hint.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').slice(0, 64).replace(/^[-._]+|[-._]+$/g, '')
  return name === '' ? 'user' : name
}
