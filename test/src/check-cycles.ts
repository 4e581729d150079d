/**
 * check-cycles prints every loop in the workspaces' import graph, between files and
 * between sibling folders, and exits 1 when there is one (`npm run check:cycles`). See
 * import-cycles.ts for what counts as an import.
 */
import { buildImportGraph, folderGraph, findImportCycles, formatImportCycle, type ImportGraph } from './import-cycles.js'

/** report prints the loops of `graph` and says whether there were none. */
function report (graph: ImportGraph, what: string): boolean {
  const cycles = findImportCycles(graph)
  if (cycles.length === 0) {
    console.log(`no import cycles among ${graph.size} ${what}`)
    return true
  }
  console.log(`${cycles.length} import cycle${cycles.length === 1 ? '' : 's'} among ${graph.size} ${what}:`)
  for (const cycle of cycles) console.log(`  ${formatImportCycle(cycle)}`)
  return false
}

const files = buildImportGraph()
const filesClean = report(files, 'modules')
const foldersClean = report(folderGraph(files), 'folders')
if (!filesClean || !foldersClean) process.exitCode = 1
