import { PROTOCOL_VERSION, serverMessageForVersion, type ServerMessage } from '@warren/protocol'

/**
 * encodeForVersion turns a map-session message (as its pieces of JSON text) into what a
 * node of `version` can parse: the same text for a current node; for an older one, the
 * message without the fields its closed schemas refuse, or undefined for a message it
 * does not know at all (which is then not sent). Only older nodes pay for the re-encoding.
 */
export function encodeForVersion (text: string | readonly string[], version: number): string | readonly string[] | undefined {
  if (version >= PROTOCOL_VERSION) return text
  const msg = JSON.parse(typeof text === 'string' ? text : text.join('')) as ServerMessage
  const out = serverMessageForVersion(msg, version)
  return out === undefined ? undefined : JSON.stringify(out)
}
