import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

// controller/src/policy/ is the pure policy engine: the policy service, the map service,
// a worker thread and the CLI share it, so it holds no state, no server and no I/O.
// Each ban says why; paths are relative to controller/src/policy/.
const BANNED: Record<string, string> = {
  '../state.js': 'the controller state belongs to the policy service (controller/src/policy-service.ts)',
  '../app.js': 'HTTP routes live in controller/src/routes/',
  '../server.js': 'starting the controller is not the engine\'s business',
  '../store.js': 'storage belongs to the policy service',
  '../policy-service.js': 'the service uses the engine, not the other way round',
  '../routes': 'HTTP routes live in controller/src/routes/',
  '../map': 'the map service uses the engine, not the other way round',
  fastify: 'HTTP server belongs in controller/src/routes/ and app.ts',
  level: 'storage belongs to the policy service',
  'classic-level': 'storage belongs to the policy service',
  ws: 'WebSockets belong to the map service',
  execa: 'running commands belongs in node/ (the command runner)',
  'node:fs': 'no file I/O in the policy engine',
  fs: 'no file I/O in the policy engine',
  'node:net': 'no sockets in the policy engine',
  net: 'no sockets in the policy engine',
  'node:child_process': 'no processes from the policy engine',
  child_process: 'no processes from the policy engine',
  'node:worker_threads': 'threads are the policy service\'s choice (controller/src/policy-runner.ts)',
  worker_threads: 'threads are the policy service\'s choice (controller/src/policy-runner.ts)'
}

const here = dirname(fileURLToPath(import.meta.url))
// compiled to controller/dist/test; the sources are at controller/src/policy
const srcDir = join(here, '..', '..', 'src', 'policy')

/** banFor names why an import is banned, matching the whole specifier or its leading part. */
function banFor (spec: string): string | undefined {
  const root = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!
  const fsRoot = spec.startsWith('node:fs') ? 'node:fs' : undefined
  return BANNED[spec] ?? BANNED[root] ?? (fsRoot === undefined ? undefined : BANNED[fsRoot]) ??
    Object.entries(BANNED).find(([k]) => k.startsWith('../') && !k.endsWith('.js') && spec.startsWith(`${k}/`))?.[1]
}

t.test('controller/src/policy imports nothing that holds state or does I/O', async t => {
  const files = readdirSync(srcDir).filter(f => f.endsWith('.ts'))
  t.ok(files.length > 5, 'found the policy sources')
  for (const f of files) {
    const text = readFileSync(join(srcDir, f), 'utf8')
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
      const spec = m[1]!
      const why = banFor(spec)
      t.notOk(why, `${f} imports '${spec}'${why !== undefined ? `: ${why}` : ''}`)
    }
  }
})

t.test('the ban list catches what it names', async t => {
  t.match(banFor('../state.js'), /policy service/)
  t.match(banFor('../map/index.js'), /map service/)
  t.match(banFor('../routes/policy.js'), /routes/)
  t.match(banFor('node:fs/promises'), /file I\/O/)
  t.match(banFor('fastify'), /HTTP/)
  t.notOk(banFor('@warren/protocol'))
  t.notOk(banFor('./parse.js'))
})
