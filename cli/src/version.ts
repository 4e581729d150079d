import { readFileSync } from 'node:fs'
import { PROTOCOL_VERSION } from '@warren/protocol'

/** CLI_VERSION is @warren/cli's package version, read once from its package.json. */
export const CLI_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** versionLine is what `warren version` and `--version` print. */
export function versionLine (): string {
  return `warren ${CLI_VERSION} (protocol ${PROTOCOL_VERSION})`
}
