import type { HostResolverConfigurator, ResolverMode } from './resolver-config.js'

/** FakeHostResolver records what the daemon asked of the host resolver, for unit tests. */
export interface FakeHostResolver extends HostResolverConfigurator {
  readonly state: { mode?: ResolverMode, domain?: string, applyCount: number, restoreCount: number }
}

/** createFakeHostResolver returns a configurator that only records calls. */
export function createFakeHostResolver (opts: { mode?: ResolverMode, upstreams?: string[] } = {}): FakeHostResolver {
  const state: FakeHostResolver['state'] = { applyCount: 0, restoreCount: 0 }
  return {
    state,
    async apply (domain) {
      state.applyCount++
      state.domain = domain
      state.mode = opts.mode ?? 'file'
      return { mode: state.mode, upstreams: [...(opts.upstreams ?? [])] }
    },
    async restore () {
      state.restoreCount++
      delete state.mode
      delete state.domain
    }
  }
}
