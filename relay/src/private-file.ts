import { open } from 'node:fs/promises'
import { constants } from 'node:fs'
import { WarrenError } from '@warren/protocol'

/** PrivateFileInit says how errors about one secret file read: what it is and how to fill it. */
export interface PrivateFileInit {
  /** what the file holds, as errors name it: `relay key file`, `OIDC client secret file` */
  what: string
  /** how to get what belongs in it, appended to errors: `make one with ...` */
  howToFill: string
  /** the option that named the file, for the error's `field` */
  field: string
  maxBytes?: number
}

/**
 * readPrivateFile reads a secret from `file`, trimmed. The file must be a regular file
 * that neither group nor others may read or write, as `chmod 600` leaves it; anything
 * else is refused with an error naming the file, and nothing is read from it. The
 * secret is never logged or echoed.
 */
export async function readPrivateFile (file: string, init: PrivateFileInit): Promise<string> {
  const { what, howToFill, field } = init
  const maxBytes = init.maxBytes ?? 4096
  let fh
  try {
    // O_NONBLOCK so that a FIFO given by mistake cannot hang the open.
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be opened (${(e as Error).message})`
    throw new WarrenError('bad_key_file', `${what} ${file} ${why}; write the secret there (${howToFill}) and run 'chmod 600 ${file}'`, { field })
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new WarrenError('bad_key_file', `${what} ${file} is not a regular file; put the secret in a file of its own with mode 0600`, { field })
    if ((st.mode & 0o077) !== 0) {
      throw new WarrenError('bad_key_file',
        `${what} ${file} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, so others on this host may read it; run 'chmod 600 ${file}' (and check who could have read the secret)`,
        { field })
    }
    if (st.size > maxBytes) throw new WarrenError('bad_key_file', `${what} ${file} is ${st.size} bytes; it should hold only the secret, on one line`, { field })
    const text = (await fh.readFile('utf8')).trim()
    if (text === '') throw new WarrenError('bad_key_file', `${what} ${file} is empty; write the secret there (${howToFill})`, { field })
    return text
  } finally {
    await fh.close()
  }
}
