import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

// protocol/ is shared by every package and must stay free of I/O, so it can be reasoned
// about and reused (for example in the SDK or a browser). Each ban says why.
const BANNED: Record<string, string> = {
  fastify: 'HTTP server belongs in controller/',
  level: 'storage belongs in controller/',
  'classic-level': 'storage belongs in controller/',
  execa: 'running commands belongs in node/ (the command runner)',
  ws: 'WebSockets belong in controller/ and node/',
  'node:child_process': 'no processes from the wire package',
  child_process: 'no processes from the wire package',
  'node:fs': 'no file I/O in the wire package',
  fs: 'no file I/O in the wire package',
  'node:fs/promises': 'no file I/O in the wire package',
  'node:net': 'no sockets in the wire package',
  'node:dgram': 'no sockets in the wire package',
  'node:http': 'no servers in the wire package',
  'node:https': 'no servers in the wire package'
}

const here = dirname(fileURLToPath(import.meta.url))
// compiled to protocol/dist/test; the sources are at protocol/src
const srcDir = join(here, '..', '..', 'src')

t.test('protocol/src imports nothing that does I/O', async t => {
  const files = readdirSync(srcDir).filter(f => f.endsWith('.ts'))
  t.ok(files.length > 3, 'found the protocol sources')
  for (const f of files) {
    const text = readFileSync(join(srcDir, f), 'utf8')
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*)['"]([^'"]+)['"]/g)) {
      const spec = m[1]!
      const root = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!
      const why = BANNED[spec] ?? BANNED[root]
      t.notOk(why, `${f} imports '${spec}'${why !== undefined ? `: ${why}` : ''}`)
    }
  }
})

t.test('package.json of protocol depends on no banned package', async t => {
  const pkg = JSON.parse(readFileSync(join(srcDir, '..', 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }
  for (const dep of Object.keys(pkg.dependencies ?? {})) {
    t.notOk(BANNED[dep], `dependency ${dep}${BANNED[dep] !== undefined ? `: ${BANNED[dep]}` : ''}`)
  }
})
