import { WarrenError, parseCredential } from '@warren/protocol'
import { readPrivateFile } from './private-file.js'

/** RELAY_KEY_ENV is the environment variable `warren relay serve` reads its link key from when no key file is given. */
export const RELAY_KEY_ENV = 'WARREN_RELAY_KEY'

const MAKE_ONE = 'make one on the controller host with \'warren admin apikeys create --scope relay\''

/**
 * readLinkKeyFile reads the relay's link key (a relay-scoped `wrnapi-...` API key) from
 * `file`. The file must be a regular file that neither group nor others may read or
 * write, as `chmod 600` leaves it; anything else is refused with an error naming the file,
 * and nothing is read from it. The key is never logged.
 */
export async function readLinkKeyFile (file: string): Promise<string> {
  const text = await readPrivateFile(file, { what: 'relay key file', howToFill: MAKE_ONE, field: 'key-file' })
  return checkLinkKey(text, `relay key file ${file}`)
}

/**
 * relayLinkKey finds the key `warren relay serve` links with: from `keyFile` (see
 * readLinkKeyFile) or else from RELAY_KEY_ENV in `env`, never from the command line,
 * where `ps` would show it. Giving both, or neither, is an error that says what to do.
 */
export async function relayLinkKey (opts: { keyFile?: string, env: Record<string, string | undefined> }): Promise<string> {
  const fromEnv = opts.env[RELAY_KEY_ENV]
  const hasEnv = fromEnv !== undefined && fromEnv !== ''
  if (opts.keyFile !== undefined && hasEnv) {
    throw new WarrenError('invalid_input', `both --key-file and ${RELAY_KEY_ENV} are set; give the relay key one way only`, { field: 'key-file' })
  }
  if (opts.keyFile !== undefined) return await readLinkKeyFile(opts.keyFile)
  if (hasEnv) return checkLinkKey(fromEnv.trim(), RELAY_KEY_ENV)
  throw new WarrenError('invalid_input',
    `a relay needs its key: put it in a file with mode 0600 and pass --key-file FILE, or set ${RELAY_KEY_ENV}; ${MAKE_ONE}`,
    { field: 'key-file' })
}

/** checkLinkKey checks that `text` (from `where`) is one API key, without echoing it. */
function checkLinkKey (text: string, where: string): string {
  try {
    parseCredential(text, 'api')
  } catch (e) {
    throw new WarrenError('bad_key_file', `${where} does not hold an API key: ${(e as Error).message}; ${MAKE_ONE}`, { field: 'key-file' })
  }
  return text
}
