import t from 'tap'
import { HostAttrs, validate } from '@warren/protocol'
import { hostAttrs, releaseTrack } from '../src/control/host-attrs.js'

t.test('a release is on the stable track, a pre-release on the unstable one', async t => {
  t.equal(releaseTrack('0.1.0'), 'stable')
  t.equal(releaseTrack('1.40.2'), 'stable')
  t.equal(releaseTrack('0.2.0-rc.1'), 'unstable')
  t.equal(releaseTrack('1.40.2+local'), 'unstable')
})

t.test('the attributes a node reports pass the hello schema and name its release track', async t => {
  const attrs = hostAttrs()
  t.doesNotThrow(() => validate(HostAttrs, attrs, 'host attributes'))
  t.equal(attrs['node:tsReleaseTrack'], releaseTrack(attrs['node:tsVersion']!))
})
