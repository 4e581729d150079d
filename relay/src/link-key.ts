import { open } from 'node:fs/promises'
import { constants } from 'node:fs'
import { WarrenError, parseCredential } from '@warren/protocol'

/** RELAY_KEY_ENV is the environment variable `warren relay serve` reads its link key from when no key file is given. */
export const RELAY_KEY_ENV = 'WARREN_RELAY_KEY'

const MAKE_ONE = 'make one on the controller host with \'warren admin apikeys create --scope relay\''
const MAX_KEY_FILE_BYTES = 4096

/**
 * readLinkKeyFile reads the relay's link key (a relay-scoped `wrnapi-...` API key) from
 * `file`. The file must be a regular file that neither group nor others may read or
 * write, as `chmod 600` leaves it; anything else is refused with an error naming the file,
 * and nothing is read from it. The key is never logged.
 */
export async function readLinkKeyFile (file: string): Promise<string> {
  let fh
  try {
    // O_NONBLOCK so that a FIFO given by mistake cannot hang the open.
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be opened (${(e as Error).message})`
    throw new WarrenError('bad_key_file', `relay key file ${file} ${why}; write the relay key there (${MAKE_ONE}) and run 'chmod 600 ${file}'`, { field: 'key-file' })
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new WarrenError('bad_key_file', `relay key file ${file} is not a regular file; put the relay key in a file of its own with mode 0600`, { field: 'key-file' })
    if ((st.mode & 0o077) !== 0) {
      throw new WarrenError('bad_key_file',
        `relay key file ${file} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, so others on this host may read it; run 'chmod 600 ${file}' (and check who could have read the key)`,
        { field: 'key-file' })
    }
    if (st.size > MAX_KEY_FILE_BYTES) throw new WarrenError('bad_key_file', `relay key file ${file} is ${st.size} bytes; it should hold only the key (wrnapi-..., one line)`, { field: 'key-file' })
    const text = (await fh.readFile('utf8')).trim()
    return checkLinkKey(text, `relay key file ${file}`)
  } finally {
    await fh.close()
  }
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
