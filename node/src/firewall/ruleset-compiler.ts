/**
 * RulesetCompiler compiles filters into set elements and keeps, between compiles, the
 * parse of every source it has seen: the engine sends the whole filter on every change,
 * and nearly all of its sources are the same as last time. The cache is the compiler's,
 * not the module's, so each firewall owns its own and the compile functions stay pure.
 */
import type { FilterRule } from '@warren/protocol'
import { formatAddrRange, parseSource, type AddrRange } from './addresses.js'
import { compileElements, type SourceParser } from './element-compile.js'
import type { CompiledFilter } from './compiled-filter.js'
import { compileAfresh, patchCompiled } from './incremental-compile.js'
import type { SetElements } from './set-elements.js'

/** SOURCE_CACHE_LIMIT bounds the cache; past it, the next compile starts a fresh one. */
const SOURCE_CACHE_LIMIT = 200_000

export interface RulesetCompiler {
  /**
   * compileFilter turns a filter into the canonical elements of Warren's sets. It throws
   * WarrenError (code `bad_filter`, naming the field) on malformed input.
   */
  compileFilter: (filter: FilterRule[]) => SetElements
  /**
   * compileIncremental compiles a filter like compileFilter (same elements), reusing what
   * it can of `prev`, this compiler's compile of the previous filter: when only a few rules
   * changed, only their sources are looked at again.
   */
  compileIncremental: (filter: FilterRule[], prev?: CompiledFilter) => CompiledFilter
}

/** SourceCache is a SourceParser that remembers, and gives equal ranges one object. */
interface SourceCache extends SourceParser { readonly size: number }

function createSourceCache (): SourceCache {
  const bySource = new Map<string, AddrRange[]>()
  /** rangeByText gives every distinct range one object, so that maps can key on it cheaply */
  const rangeByText = new Map<string, AddrRange>()
  return {
    get size () { return bySource.size },
    source (s, rule, index) {
      let ranges = bySource.get(s)
      if (ranges === undefined) {
        ranges = parseSource(s, `filter[${rule}].srcs[${index}]`).map(r => {
          const text = formatAddrRange(r.v6, r.lo, r.hi)
          let same = rangeByText.get(text)
          if (same === undefined) rangeByText.set(text, same = { ...r, text, single: r.lo === r.hi })
          return same
        })
        bySource.set(s, ranges)
      }
      return ranges
    }
  }
}

/** createRulesetCompiler makes a compiler with an empty source cache. */
export function createRulesetCompiler (): RulesetCompiler {
  let cache = createSourceCache()
  /** trim bounds the cache; it runs only between compiles, never inside one */
  const trim = (): void => { if (cache.size > SOURCE_CACHE_LIMIT) cache = createSourceCache() }
  return {
    compileFilter (filter) {
      trim()
      return compileElements(filter, cache)
    },
    compileIncremental (filter, prev) {
      trim()
      // ranges of another cache (trimmed, or another compiler's) are not comparable
      if (prev !== undefined && prev.sources !== cache) prev = undefined
      if (prev !== undefined) {
        const patched = patchCompiled(filter, prev, cache)
        if (patched !== undefined) return patched
      }
      return compileAfresh(filter, prev, cache)
    }
  }
}

/** compileFilter compiles one filter with a compiler of its own (see RulesetCompiler). */
export function compileFilter (filter: FilterRule[]): SetElements {
  return createRulesetCompiler().compileFilter(filter)
}
