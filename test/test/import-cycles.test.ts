import t from 'tap'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { buildImportGraph, folderGraph, findImportCycles, formatImportCycle } from '../src/import-cycles.js'

/** writeTree writes `files` (path relative to a new temporary root -> text) and returns the root. */
function writeTree (t: { teardown: (fn: () => void) => void }, files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'warren-cycles-'))
  t.teardown(() => { rmSync(root, { recursive: true, force: true }) })
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true })
    writeFileSync(join(root, path), text)
  }
  return root
}

t.test('each loop is found once, through type imports, re-exports and other workspaces; a diamond is not a loop', async t => {
  const root = writeTree(t, {
    'package.json': JSON.stringify({ name: 'root', workspaces: ['a', 'b'] }),
    'a/package.json': JSON.stringify({ name: '@x/a', exports: { '.': { import: './dist/src/index.js' }, './sub': { import: './dist/src/sub/index.js' } } }),
    'b/package.json': JSON.stringify({ name: '@x/b' }),
    'a/src/index.ts': "export * from './sub/index.js'\nexport * from './left.js'\nexport * from './right.js'\nexport * from './one.js'\n",
    'a/src/left.ts': "import { base } from './base.js'\nexport const left = base\n",
    'a/src/right.ts': "import { base } from './base.js'\nexport const right = base\n",
    'a/src/base.ts': '// imports nothing\nexport const base = 1\n',
    'a/src/sub/index.ts': "import type { Server } from '../server.js'\nexport type Hook = (s: Server) => void\n",
    'a/src/server.ts': "import type { Hook } from './sub/index.js'\nexport interface Server { hook: Hook }\n",
    'a/src/one.ts': "import { two } from './two'\nexport const one = two\n",
    'a/src/two.ts': "import { three } from './three.js'\nexport const two = three\n",
    'a/src/three.ts': "import { left } from '@x/a'\nexport const three = left\n",
    'b/src/index.ts': "import { left } from '@x/a'\nimport type { Hook } from '@x/a/sub'\nexport const b: Hook = () => left\n"
  })
  const cycles = findImportCycles(buildImportGraph(root)).map(formatImportCycle)
  t.same(cycles, [
    'a/src/index.ts -> a/src/one.ts -> a/src/two.ts -> a/src/three.ts -> a/src/index.ts',
    'a/src/server.ts -> a/src/sub/index.ts -> a/src/server.ts'
  ])
})

t.test('sibling folders that import each other are a loop; a folder using its parent is not', async t => {
  const root = writeTree(t, {
    'package.json': JSON.stringify({ name: 'root', workspaces: ['a'] }),
    'a/package.json': JSON.stringify({ name: '@x/a' }),
    'a/src/util.ts': 'export const util = 1\n',
    'a/src/index.ts': "export * from './daemon/daemon.js'\n",
    'a/src/daemon/daemon.ts': "import { util } from '../util.js'\nimport { api } from '../api/server.js'\nexport const daemon = util + api\n",
    'a/src/daemon/metrics.ts': 'export const metrics = 1\n',
    'a/src/api/server.ts': "import { metrics } from '../daemon/metrics.js'\nexport const api = metrics\n"
  })
  const graph = buildImportGraph(root)
  t.same(findImportCycles(graph), [], 'no loop between files')
  t.same(findImportCycles(folderGraph(graph)).map(formatImportCycle), ['a/src/api -> a/src/daemon -> a/src/api'])
})

t.test('the import graph of this repository has no loops', async t => {
  const graph = buildImportGraph()
  t.ok(graph.size > 100, `read the sources (${graph.size} modules)`)
  for (const [what, g] of [['files', graph], ['sibling folders', folderGraph(graph)]] as const) {
    const cycles = findImportCycles(g)
    if (cycles.length === 0) t.pass(`no loop between ${what}`)
    for (const cycle of cycles) t.fail(`import loop between ${what}: ${formatImportCycle(cycle)}`)
  }
})
