import t from 'tap'
import { pathTimingsFromEnv, PATH_TIMINGS_ENV } from '../src/nat/path-timings-env.js'

t.test('test timings come from the environment, checked field by field', async t => {
  t.equal(pathTimingsFromEnv({}), undefined, 'unset: the defaults')
  t.equal(pathTimingsFromEnv({ [PATH_TIMINGS_ENV]: ' ' }), undefined, 'empty: the defaults')
  t.same(pathTimingsFromEnv({ [PATH_TIMINGS_ENV]: '{"udpRelayIdleMs":10000,"retryMaxMs":40000}' }), { udpRelayIdleMs: 10_000, retryMaxMs: 40_000 })
  t.throws(() => pathTimingsFromEnv({ [PATH_TIMINGS_ENV]: '{udpRelayIdleMs: 1}' }), { code: 'usage', message: /WARREN_TEST_PATH_TIMINGS: not JSON/ })
  t.throws(() => pathTimingsFromEnv({ [PATH_TIMINGS_ENV]: '[1]' }), { message: /give a JSON object/ })
  t.throws(() => pathTimingsFromEnv({ [PATH_TIMINGS_ENV]: '{"retrySlotMs":1}' }), { message: /'retrySlotMs' is not a path timing; use heartbeatMs, .*udpRelayIdleMs/ })
  t.throws(() => pathTimingsFromEnv({ [PATH_TIMINGS_ENV]: '{"burstMs":-1}' }), { message: /burstMs must be a positive number of ms, not -1/ })
  t.throws(() => pathTimingsFromEnv({ [PATH_TIMINGS_ENV]: '{"burstMs":"5"}' }), { message: /burstMs must be a positive number of ms, not "5"/ })
})
