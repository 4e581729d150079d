import t from 'tap'
import { existsSync } from 'node:fs'
import puppeteer from 'puppeteer-core'
import { startOidcRig } from '../src/oidc-rig.js'

// A real headless browser (Debian's chromium, driven by puppeteer-core) completes the
// login page that `warren up` printed: the provider's login and consent forms, then the
// controller's page that says the node joined.

const CHROMIUM = process.env.WARREN_CHROMIUM ?? '/usr/bin/chromium'
const skip = existsSync(CHROMIUM) ? false : `needs a headless browser at ${CHROMIUM}: apt-get install chromium (or set WARREN_CHROMIUM)`

t.test('a person logs in with a browser at the URL warren up printed', { skip, timeout: 180_000 }, async t => {
  const { ctl, socket, warren, loginUrl } = await startOidcRig(t)
  const up = warren(['up', '--socket', socket, '--controller', ctl.url, '--fingerprint', ctl.fingerprint, '--hostname', 'laptop'])
  const url = await loginUrl(up)

  // The controller's certificate is self-signed here; its fingerprint is what the CLI pinned.
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--ignore-certificate-errors', '--disable-gpu'] })
  t.teardown(async () => { await browser.close() })
  const page = await browser.newPage()
  await page.goto(url, { waitUntil: 'domcontentloaded' })
  await page.waitForSelector('input[name=login]', { timeout: 30_000 })
  await page.type('input[name=login]', 'alice')
  await page.type('input[name=password]', 'any password')
  await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }), page.click('button[type=submit]')])
  // The provider asks once to share the profile with the client.
  await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }), page.click('button[type=submit]')])
  await page.waitForSelector('#message', { timeout: 30_000 })
  const message = await page.$eval('#message', el => el.textContent ?? '')
  t.match(message, /^Logged in as alice@example\.com\. Node laptop \(100\.64\.\d+\.\d+\) is now in the mesh/, 'the browser shows that the node joined')

  t.equal(await up.code, 0, up.output())
  t.match(up.output(), /up: laptop\.warren\.internal/, 'warren up finished')
  t.equal(ctl.state.getNode('laptop')?.user, 'alice', 'the node is alice\'s')

  await page.goto(url, { waitUntil: 'domcontentloaded' })
  t.match(await page.$eval('#message', el => el.textContent ?? ''), /this login link was already used/, 'the printed link works once')
})
