/**
 * import-cycles finds loops in the import graph of the workspaces' sources: a module
 * that, through its imports, imports itself. Type-only imports count, because a loop
 * through types still ties two modules together (they can only be read, changed and
 * tested as one). `folderGraph` gives the same check one level up, between sibling
 * folders such as node/src/daemon and node/src/localapi. Imports of other workspaces (`@warren/sdk/transport`) are followed
 * through their package.json `exports` to the source file.
 */
import { existsSync } from 'node:fs'
import { join, dirname, relative } from 'node:path'
import { REPO_ROOT, listWorkspaces, listSourceFiles, importsOfFile, type Workspace } from './source-imports.js'

/** ImportCycle is one loop: the files in import order, the first one repeated at the end. */
export type ImportCycle = string[]

/** ImportGraph maps each source file (relative to the root) to the source files it imports. */
export type ImportGraph = Map<string, string[]>

/** sourceOfBuilt maps `./dist/src/x.js` in a package's exports to `src/x.ts`. */
function sourceOfBuilt (path: string): string {
  return path.replace(/^\.\//, '').replace(/^dist\//, '').replace(/\.js$/, '.ts')
}

/** resolveRelative finds the source file a relative specifier names, or undefined when it is not a source file. */
function resolveRelative (fromFile: string, spec: string): string | undefined {
  const base = join(dirname(fromFile), spec)
  const candidates = [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')]
  return candidates.find(c => c.endsWith('.ts') && existsSync(c))
}

/** resolveWorkspace finds the source file behind `@scope/pkg[/sub]` when it is one of the workspaces. */
function resolveWorkspace (root: string, workspaces: Workspace[], spec: string): string | undefined {
  for (const ws of workspaces) {
    if (spec !== ws.pkg.name && !spec.startsWith(`${ws.pkg.name}/`)) continue
    const entry = ws.pkg.exports?.[`.${spec.slice(ws.pkg.name.length)}`]
    const target = typeof entry === 'string' ? entry : entry?.import
    return target === undefined ? undefined : join(root, ws.dir, sourceOfBuilt(target))
  }
  return undefined
}

/** buildImportGraph reads every .ts file under each workspace's src/ and test/. */
export function buildImportGraph (root = REPO_ROOT): ImportGraph {
  const workspaces = listWorkspaces(root)
  const graph: ImportGraph = new Map()
  for (const ws of workspaces) {
    for (const file of [...listSourceFiles(join(root, ws.dir, 'src')), ...listSourceFiles(join(root, ws.dir, 'test'))]) {
      const targets = new Set<string>()
      for (const spec of importsOfFile(file)) {
        const target = spec.startsWith('.') ? resolveRelative(file, spec) : resolveWorkspace(root, workspaces, spec)
        if (target !== undefined) targets.add(relative(root, target))
      }
      graph.set(relative(root, file), [...targets].sort())
    }
  }
  return graph
}

/** stronglyConnected returns the graph's strongly connected components (Tarjan), each sorted. */
function stronglyConnected (graph: ImportGraph): string[][] {
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const out: string[][] = []
  const visit = (v: string): void => {
    index.set(v, index.size)
    low.set(v, index.get(v)!)
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) !== index.get(v)) return
    const component: string[] = []
    let w: string
    do {
      w = stack.pop()!
      onStack.delete(w)
      component.push(w)
    } while (w !== v)
    out.push(component.sort())
  }
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v)
  return out
}

/** shortestCycleThrough finds the shortest loop from `start` back to itself inside `members` (breadth first). */
function shortestCycleThrough (graph: ImportGraph, start: string, members: Set<string>): ImportCycle | undefined {
  const cameFrom = new Map<string, string>()
  const queue = [start]
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue
      if (w === start) {
        const path: string[] = []
        for (let u = v; u !== start; u = cameFrom.get(u)!) path.unshift(u)
        return [start, ...path, start]
      }
      if (!cameFrom.has(w)) {
        cameFrom.set(w, v)
        queue.push(w)
      }
    }
  }
  return undefined
}

/** canonical rotates a cycle to start at its smallest file, so that one loop is reported once. */
function canonical (cycle: ImportCycle): string {
  const ring = cycle.slice(0, -1)
  const first = ring.indexOf([...ring].sort()[0]!)
  return [...ring.slice(first), ...ring.slice(0, first)].join(' -> ')
}

/**
 * findImportCycles returns, for every file that is part of a loop, the shortest loop
 * through it (each distinct loop once), sorted. An empty list means the graph is a DAG.
 */
export function findImportCycles (graph: ImportGraph = buildImportGraph()): ImportCycle[] {
  const found = new Map<string, ImportCycle>()
  for (const component of stronglyConnected(graph)) {
    const members = new Set(component)
    for (const start of component) {
      const cycle = shortestCycleThrough(graph, start, members)
      if (cycle === undefined) continue
      const key = canonical(cycle)
      if (!found.has(key)) found.set(key, [...key.split(' -> '), key.split(' -> ')[0]!])
    }
  }
  return [...found.keys()].sort().map(k => found.get(k)!)
}

/** folderOf is the folder a file is in. */
function folderOf (file: string): string {
  return file.slice(0, Math.max(0, file.lastIndexOf('/')))
}

/** isWithin says whether `folder` is `other` or inside it. */
function isWithin (folder: string, other: string): boolean {
  return folder === other || folder.startsWith(`${other}/`)
}

/**
 * folderGraph collapses the file graph to folders, keeping only imports between folders
 * that do not contain each other: `daemon/` importing `localapi/` and `localapi/`
 * importing `daemon/` is a loop, a folder using its parent's shared files is not.
 */
export function folderGraph (graph: ImportGraph): ImportGraph {
  const folders = new Map<string, Set<string>>()
  for (const [file, targets] of graph) {
    const from = folderOf(file)
    const out = folders.get(from) ?? new Set<string>()
    for (const target of targets) {
      const to = folderOf(target)
      if (!isWithin(from, to) && !isWithin(to, from)) out.add(to)
    }
    folders.set(from, out)
  }
  return new Map([...folders].map(([folder, targets]) => [folder, [...targets].sort()]))
}

/** formatImportCycle shows a loop as `a.ts -> b.ts -> a.ts`. */
export function formatImportCycle (cycle: ImportCycle): string {
  return cycle.join(' -> ')
}
