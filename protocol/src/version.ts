import { WarrenError } from './errors.js'

/**
 * PROTOCOL_VERSION is the one integer that says which wire protocol this build speaks
 * between CLI, daemon and controller. Bump it on any incompatible change and add a line.
 *
 * History:
 *   1 (2026-11-24): first version: signed registration, challenge-signed map session,
 *                   full map then sequenced deltas, per-node inbound filter.
 */
export const PROTOCOL_VERSION = 1

/** MIN_PROTOCOL_VERSION is the oldest version a peer may speak and still be served. */
export const MIN_PROTOCOL_VERSION = 1

/** checkProtocolVersion throws a clear error when a peer speaks a version we cannot serve. */
export function checkProtocolVersion (theirs: number, who = 'peer'): void {
  if (!Number.isInteger(theirs) || theirs < MIN_PROTOCOL_VERSION || theirs > PROTOCOL_VERSION) {
    throw new WarrenError('protocol_version',
      `${who} speaks Warren protocol version ${theirs}, but this build speaks ${MIN_PROTOCOL_VERSION === PROTOCOL_VERSION ? PROTOCOL_VERSION : `${MIN_PROTOCOL_VERSION}-${PROTOCOL_VERSION}`}; ` +
      'upgrade the older side so both run the same Warren release')
  }
}
