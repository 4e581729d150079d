import t from 'tap'
import { shuffled } from './runner-table-replay.js'
import { createRouter, type RouterConfig } from '../src/router/index.js'
import { createFakeRouter } from '../src/testing.js'
import { simulateIpSystem } from './router-simulated-system.js'

const IF = 'wgtest0'
const cfg = (addresses: string[], routes: string[], mtu?: number): RouterConfig => ({ interfaceName: IF, addresses, routes, ...(mtu !== undefined ? { mtu } : {}) })
const mutating = (calls: Array<{ argv: string[] }>) => calls.filter(x => !/ show /.test(x.argv.join(' '))).map(x => x.argv.join(' '))

/** Each case is a full desired state and what `ip` must then show on the link. */
const cases: Array<{ name: string, in: RouterConfig, want: string[] }> = [
  { name: 'nothing', in: cfg([], []), want: ['link up mtu 1420', 'addr fe80::1/64'] },
  {
    name: 'mesh addresses and routes',
    in: cfg(['100.64.0.5/32', 'fd7a:115c:a1e0::5/128'], ['100.64.0.0/10', 'fd7a:115c:a1e0::/48']),
    want: ['link up mtu 1420', 'addr 100.64.0.5/32', 'addr fd7a:115c:a1e0::5/128', 'addr fe80::1/64', 'route 100.64.0.0/10', 'route fd7a:115c:a1e0::/48'].sort()
  },
  {
    name: 'a new IPv4 address, non-canonical input, lower MTU',
    in: cfg(['100.64.0.9', 'fd7a:115c:a1e0:0::5/128'], ['100.64.0.0/10', 'fd7a:115c:a1e0:0:0::/48'], 1380),
    want: ['link up mtu 1380', 'addr 100.64.0.9/32', 'addr fd7a:115c:a1e0::5/128', 'addr fe80::1/64', 'route 100.64.0.0/10', 'route fd7a:115c:a1e0::/48'].sort()
  },
  {
    name: 'IPv4 only with a host route',
    in: cfg(['100.64.0.5/32'], ['100.64.0.7/32', '100.64.0.0/10']),
    want: ['link up mtu 1420', 'addr 100.64.0.5/32', 'addr fe80::1/64', 'route 100.64.0.0/10', 'route 100.64.0.7/32'].sort()
  }
]

t.test('set reaches each table state from any previous state, and repeating it changes nothing', async t => {
  for (let round = 0; round < 6; round++) {
    const sim = simulateIpSystem([IF])
    const router = createRouter({ runner: sim.runner, interfaceName: IF })
    for (const tc of shuffled(cases, round + 11)) {
      // MTU is only set when asked for: start each case from the default.
      sim.links.get(IF)!.mtu = 1420
      await router.set(tc.in)
      t.same(sim.view(IF).sort(), [...tc.want].sort(), `round ${round}: ${tc.name}`)
      sim.runner.reset()
      const again = await router.set(tc.in)
      t.same(again, { link: false, addressesAdded: [], addressesRemoved: [], routesAdded: [], routesRemoved: [] }, `${tc.name}: second set reports no change`)
      t.same(mutating(sim.runner.calls), [], `${tc.name}: second set runs only reads`)
    }
  }
})

t.test('from a fresh link the commands are exactly these, in this order', async t => {
  const sim = simulateIpSystem([IF])
  const router = createRouter({ runner: sim.runner, interfaceName: IF })
  await router.set(cases[1]!.in)
  t.same(mutating(sim.runner.calls), [
    `ip link set dev ${IF} up`,
    `ip addr add 100.64.0.5/32 dev ${IF}`,
    `ip -6 addr add fd7a:115c:a1e0::5/128 dev ${IF} nodad`,
    `ip route replace 100.64.0.0/10 dev ${IF}`,
    `ip -6 route replace fd7a:115c:a1e0::/48 dev ${IF}`
  ])
  sim.runner.reset()
  await router.set(cfg(['100.64.0.6/32', 'fd7a:115c:a1e0::5/128'], ['100.64.0.0/10', 'fd7a:115c:a1e0::/48']))
  t.same(mutating(sim.runner.calls), [`ip addr add 100.64.0.6/32 dev ${IF}`, `ip addr del 100.64.0.5/32 dev ${IF}`], 'an address change touches only that address, the new one first')
  sim.runner.reset()
  await router.set(cfg(['fd7a:115c:a1e0::5/128'], ['100.64.0.0/10', 'fd7a:115c:a1e0::/48']))
  t.same(mutating(sim.runner.calls), [`ip addr del 100.64.0.6/32 dev ${IF}`, `ip route replace 100.64.0.0/10 dev ${IF}`], 'a route the kernel dropped with the last IPv4 address is restored')
  t.same(sim.view(IF).filter(l => l.startsWith('route')), ['route 100.64.0.0/10', 'route fd7a:115c:a1e0::/48'])
})

t.test('close removes what set added and leaves the kernel\'s own entries', async t => {
  const sim = simulateIpSystem([IF])
  const router = createRouter({ runner: sim.runner, interfaceName: IF })
  await router.set(cases[1]!.in)
  sim.links.get(IF)!.addrs.set('192.0.2.1/24', 'global')
  await router.close()
  t.same(sim.view(IF), ['link up mtu 1420', 'addr 192.0.2.1/24', 'addr fe80::1/64'], 'an address someone else added stays')
  await router.close()
  t.pass('closing twice is fine')
  const gone = createRouter({ runner: simulateIpSystem([]).runner, interfaceName: IF })
  await gone.close()
  t.pass('closing a router whose link is gone is fine')
})

t.test('a router started after a daemon restart removes everything Warren manages on close', async t => {
  const sim = simulateIpSystem([IF])
  await createRouter({ runner: sim.runner, interfaceName: IF }).set(cases[1]!.in)
  await createRouter({ runner: sim.runner, interfaceName: IF }).close()
  t.same(sim.view(IF), ['link up mtu 1420', 'addr fe80::1/64'])
})

t.test('bad config and a missing link give clear errors and change nothing', async t => {
  const sim = simulateIpSystem([IF])
  const router = createRouter({ runner: sim.runner, interfaceName: IF })
  const bad: Array<[RouterConfig, RegExp]> = [
    [cfg(['100.64.0.500/32'], []), /addresses\[0\] '100\.64\.0\.500\/32' is not an IP address/],
    [cfg([], ['nope']), /routes\[0\] 'nope' is not an IP prefix/],
    [cfg([], [], 100), /MTU 100 is out of range/],
    [{ ...cfg([], []), interfaceName: 'other0' }, /is for interface 'other0' but this router manages 'wgtest0'/]
  ]
  for (const [c, msg] of bad) {
    const err = await router.set(c).catch(e => e)
    t.equal(err.code, 'bad_config')
    t.match(err.message, msg)
  }
  t.same(sim.runner.calls, [])
  const err = await createRouter({ runner: simulateIpSystem([]).runner, interfaceName: IF }).set(cfg([], [])).catch(e => e)
  t.match(err.message, /interface wgtest0 does not exist: bring WireGuard up before its addresses and routes/)
})

t.test('the fake router plans like the real one', async t => {
  const fake = createFakeRouter({ interfaceName: IF })
  for (const tc of shuffled(cases, 5)) {
    await fake.set(tc.in)
    const s = fake.state()!
    t.same(s.addresses, tc.in.addresses.length === 0 ? [] : tc.want.filter(w => w.startsWith('addr') && !w.includes('fe80')).map(w => w.slice(5)).sort())
    t.same(s.routes, tc.want.filter(w => w.startsWith('route')).map(w => w.slice(6)).sort())
    t.same(await fake.set(tc.in), { link: false, addressesAdded: [], addressesRemoved: [], routesAdded: [], routesRemoved: [] })
  }
  await fake.close()
  t.same(fake.state()!.addresses, [])
})
