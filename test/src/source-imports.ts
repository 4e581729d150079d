/**
 * source-imports reads what the workspaces' TypeScript sources import, for the checks
 * that keep package boundaries honest (declared dependencies, import bans, import
 * cycles). Type-only imports count: a loop through types is still a loop in the design.
 */
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs'
import { isBuiltin } from 'node:module'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

/** REPO_ROOT is the directory holding the root package.json (this file runs from test/dist/src). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')

/** PackageJson is the part of a package.json these checks read. */
export interface PackageJson {
  name: string
  workspaces?: string[]
  exports?: Record<string, { import?: string } | string>
  dependencies?: Record<string, string>
  devDependencies?: Record<string, string>
}

/** Workspace is one npm workspace: its folder (relative to the root) and its package.json. */
export interface Workspace {
  dir: string
  pkg: PackageJson
}

/** readPackageJson parses `<dir>/package.json`. */
export function readPackageJson (dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson
}

/** listWorkspaces returns the workspaces the root package.json names, in its order. */
export function listWorkspaces (root = REPO_ROOT): Workspace[] {
  return (readPackageJson(root).workspaces ?? []).map(dir => ({ dir, pkg: readPackageJson(join(root, dir)) }))
}

/** listSourceFiles returns every .ts file (not .d.ts) under `dir`, sorted; none when it does not exist. */
export function listSourceFiles (dir: string): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) {
        if (name !== 'node_modules' && name !== 'dist') walk(p)
      } else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p)
    }
  }
  if (existsSync(dir)) walk(dir)
  return out
}

/**
 * importSpecifiers lists what a module's text imports: static and dynamic imports,
 * re-exports, require() and import.meta.resolve(). Comments and strings are not imports.
 */
export function importSpecifiers (text: string): string[] {
  const found = ts.preProcessFile(text, true, true).importedFiles.map(f => f.fileName)
  for (const m of text.matchAll(/import\.meta\.resolve\(\s*['"]([^'"]+)['"]/g)) found.push(m[1]!)
  return [...new Set(found)]
}

/** importsOfFile reads `file` and returns its import specifiers. */
export function importsOfFile (file: string): string[] {
  return importSpecifiers(readFileSync(file, 'utf8'))
}

/**
 * packageOfSpecifier names the npm package a specifier loads (`@a/b/c` is `@a/b`, `x/y`
 * is `x`), or undefined for relative paths and Node built-ins.
 */
export function packageOfSpecifier (spec: string): string | undefined {
  if (spec.startsWith('.') || spec.startsWith('/') || isBuiltin(spec)) return undefined
  const parts = spec.split('/')
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}
