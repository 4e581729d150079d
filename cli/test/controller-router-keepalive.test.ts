import t from 'tap'
import { routerKeepalive } from '../src/commands/controller.js'

t.test('--router-keepalive takes a duration of at least a second', async t => {
  t.equal(routerKeepalive('3s'), 3000)
  t.equal(routerKeepalive('1m'), 60_000)
  t.throws(() => routerKeepalive('0'), /--router-keepalive '0' is too short: use at least 1s/)
  t.throws(() => routerKeepalive('fast'), /--router-keepalive 'fast' is not a duration/)
})
