import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { REPO_ROOT, listWorkspaces, listSourceFiles, importsOfFile, importSpecifiers, packageOfSpecifier, readPackageJson, type Workspace } from '../src/source-imports.js'

// Every workspace declares each package it imports and nothing it does not, so that
// installing one package brings what it needs and no more. Files under a workspace's
// test/ may also use the root devDependencies (tap, fast-check, typescript).

/** importedPackages maps each package `files` import to the first file that does. */
function importedPackages (files: string[], self: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const file of files) {
    for (const spec of importsOfFile(file)) {
      const name = packageOfSpecifier(spec)
      if (name !== undefined && name !== self && !out.has(name)) out.set(name, file.slice(REPO_ROOT.length + 1))
    }
  }
  return out
}

/** dependencyProblems says, one line each, what `ws` imports without declaring and declares without importing. */
function dependencyProblems (ws: Workspace, rootDev: Record<string, string>): string[] {
  const dir = join(REPO_ROOT, ws.dir)
  const name = ws.pkg.name
  const declared = new Set([...Object.keys(ws.pkg.dependencies ?? {}), ...Object.keys(ws.pkg.devDependencies ?? {})])
  const fromSrc = importedPackages(listSourceFiles(join(dir, 'src')), name)
  const fromTest = importedPackages(listSourceFiles(join(dir, 'test')), name)
  const problems: string[] = []
  for (const [dep, file] of fromSrc) {
    if (!declared.has(dep)) problems.push(`${name} imports ${dep} (in ${file}) but does not declare it`)
  }
  for (const [dep, file] of fromTest) {
    if (!declared.has(dep) && !fromSrc.has(dep) && rootDev[dep] === undefined) problems.push(`${name} imports ${dep} (in ${file}) but does not declare it`)
  }
  for (const dep of declared) {
    if (!dep.startsWith('@types/') && !fromSrc.has(dep) && !fromTest.has(dep)) problems.push(`${name} declares ${dep} but never imports it`)
  }
  return problems
}

t.test('each workspace declares exactly the packages it imports', async t => {
  const workspaces = listWorkspaces()
  t.ok(workspaces.length >= 7, 'found the workspaces')
  const rootDev = readPackageJson(REPO_ROOT).devDependencies ?? {}
  for (const ws of workspaces) {
    const problems = dependencyProblems(ws, rootDev)
    if (problems.length === 0) t.pass(`${ws.pkg.name}: dependencies match imports`)
    for (const problem of problems) t.fail(problem)
  }
})

t.test('each workspace\'s tsconfig references exactly the workspaces it depends on', async t => {
  const workspaces = listWorkspaces()
  const dirOf = new Map(workspaces.map(ws => [ws.pkg.name, ws.dir]))
  for (const ws of workspaces) {
    const tsconfig = JSON.parse(readFileSync(join(REPO_ROOT, ws.dir, 'tsconfig.json'), 'utf8')) as { references?: Array<{ path: string }> }
    const referenced = (tsconfig.references ?? []).map(r => join(ws.dir, r.path)).sort()
    const deps = Object.keys({ ...ws.pkg.dependencies, ...ws.pkg.devDependencies })
    const expected = deps.flatMap(d => dirOf.has(d) ? [dirOf.get(d)!] : []).sort()
    t.same(referenced, expected, `${ws.dir}/tsconfig.json references ${expected.join(', ') || 'nothing'}`)
  }
})

t.test('imports are read from code, not from comments or strings', async t => {
  const text = [
    '// from \'commented\'',
    '/* import x from \'block-commented\' */',
    'import type { A } from \'typed\'',
    'export * from \'./local.js\'',
    'const m = await import(\'@scope/dynamic/sub\')',
    'const url = import.meta.resolve(\'resolved\')',
    'const s = "from \'quoted\'"'
  ].join('\n')
  t.same(importSpecifiers(text).sort(), ['./local.js', '@scope/dynamic/sub', 'resolved', 'typed'])
  t.same(['./local.js', 'node:fs', 'fs/promises', '@scope/dynamic/sub', 'ws'].map(packageOfSpecifier), [undefined, undefined, undefined, '@scope/dynamic', 'ws'])
})
