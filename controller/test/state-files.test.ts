import t from 'tap'
import { readdir, lstat, chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { tempDir, socketRequest } from './helpers.js'
import { openStore } from '../src/store.js'
import { startController } from '../src/server.js'

/**
 * looseModes lists every path under dir that group or others may read, write or enter.
 * The TLS certificate is public by design (every client is shown it), so it may be 0644.
 */
async function looseModes (dir: string): Promise<string[]> {
  const loose: string[] = []
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p)
    if (!st.isSymbolicLink() && !p.endsWith('tls-cert.pem') && (st.mode & 0o077) !== 0) loose.push(`${p.slice(dir.length) || '/'} ${(st.mode & 0o777).toString(8)}`)
    if (st.isDirectory()) for (const name of await readdir(p)) await walk(join(p, name))
  }
  await walk(dir)
  return loose
}

t.test('the state dir is private (0700 dirs, 0600 files) even under umask 022, and is made so again on each start', async t => {
  const before = process.umask(0o022)
  t.teardown(() => { process.umask(before) })
  const dir = await tempDir(t)
  const c = await startController({ stateDir: dir, listen: '127.0.0.1:0', logger: false, rateLimit: false })
  t.equal((await socketRequest(c.adminSocket, 'POST', '/v1/users', { name: 'alice' })).status, 201)
  t.same(await looseModes(dir), [], 'while running')
  await c.close()
  t.same(await looseModes(dir), [], 'after a clean stop')

  // A tree left loose (an older version, a restore from backup) is tightened on open.
  await chmod(join(dir, 'db'), 0o755)
  for (const name of await readdir(join(dir, 'db'))) await chmod(join(dir, 'db', name), 0o644)
  const store = await openStore(dir)
  t.same(await looseModes(join(dir, 'db')), [], 'after the store opened again')
  await store.close()
})
