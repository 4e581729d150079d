import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import Provider, { type Configuration } from 'oidc-provider'
import { generateKeyPair, exportJWK, SignJWT, decodeJwt, type JWK } from 'jose'

/** IdpUser is a person at the test identity provider. */
export interface IdpUser { email?: string, emailVerified?: boolean, name?: string, groups?: string[] }

/**
 * TestIdp is a real OpenID provider (oidc-provider) on loopback with one confidential
 * client that must use PKCE. Its login and consent pages are the provider's own
 * development pages; `browse` fills them in like a person would (any password).
 */
export interface TestIdp {
  issuer: string
  clientId: string
  clientSecret: string
  users: Map<string, IdpUser>
  /** allow makes the client accept this redirect URI (the controller's, once it listens) */
  allow: (redirectUri: string) => void
  /**
   * browse starts at `url` (the provider's authorization URL) with a fresh browser, logs
   * in as `login` and returns the URL the provider finally redirected to (the callback)
   */
  browse: (url: string, login: string) => Promise<URL>
  /**
   * tamperingFetch is a fetch that re-signs the ID token of token answers with the
   * provider's key after `change` edited its claims: a forged but validly signed token
   */
  tamperingFetch: (change: (claims: Record<string, unknown>) => void) => typeof fetch
  close: () => Promise<void>
}

const KID = 'test-key'

/** TEST_CLIENT_ID and TEST_CLIENT_SECRET are the test provider's one client. */
export const TEST_CLIENT_ID = 'warren'
export const TEST_CLIENT_SECRET = 'test-client-secret-0123456789'

/**
 * browseLogin plays a person with a fresh browser at the provider `issuer`: from `start`
 * (an authorization URL) it follows redirects and fills in the login form (as `login`,
 * any password) and the consent form, and returns the first URL outside the provider
 * (the client's callback with the code).
 */
export async function browseLogin (issuer: string, start: string, login: string): Promise<URL> {
  const jar = new Map<string, string>()
  const cookieHeader = (): string => [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
  let url = new URL(start)
  let init: RequestInit = {}
  for (let hop = 0; hop < 20; hop++) {
    if (url.origin !== issuer) return url
    const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...init.headers as Record<string, string>, cookie: cookieHeader() } })
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';')
      const eq = pair!.indexOf('=')
      jar.set(pair!.slice(0, eq), pair!.slice(eq + 1))
    }
    const location = res.headers.get('location')
    if (location !== null) {
      url = new URL(location, url)
      init = {}
      continue
    }
    const html = await res.text()
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1]
    const prompt = /name="prompt" value="(\w+)"/.exec(html)?.[1]
    if (action === undefined || prompt === undefined) throw new Error(`the provider answered ${res.status} without a form: ${html.slice(0, 500)}`)
    const form = new URLSearchParams(prompt === 'login' ? { prompt, login, password: 'any' } : { prompt })
    url = new URL(action, url)
    init = { method: 'POST', body: form.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } }
  }
  throw new Error('too many redirects at the provider')
}

/** startTestIdp starts the provider on 127.0.0.1 (`port` 0: a free one), with no users yet. */
export async function startTestIdp (port = 0): Promise<TestIdp> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true })
  const jwk: JWK = { ...await exportJWK(privateKey), kid: KID, alg: 'RS256', use: 'sig' }
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined
  const server = createServer((req, res) => {
    if (handler === undefined) { res.statusCode = 503; res.end('provider not configured yet'); return }
    handler(req, res)
  })
  await new Promise<void>(resolve => server.listen(port, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const users = new Map<string, IdpUser>()
  const clientId = TEST_CLIENT_ID
  const clientSecret = TEST_CLIENT_SECRET

  function configure (redirectUris: string[]): void {
    const config: Configuration = {
      clients: [{ client_id: clientId, client_secret: clientSecret, redirect_uris: redirectUris, grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] }],
      pkce: { required: () => true },
      jwks: { keys: [jwk] },
      cookies: { keys: ['test-cookie-key'] },
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'] },
      // Claims go into the ID token itself (the controller also reads userinfo when they are missing).
      conformIdTokenClaims: false,
      features: { devInteractions: { enabled: true } },
      ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 600, IdToken: 600, Interaction: 600, Session: 600 },
      async findAccount (_ctx, id) {
        const u = users.get(id)
        if (u === undefined) return undefined
        return {
          accountId: id,
          async claims () {
            return {
              sub: id,
              preferred_username: id,
              ...(u.email !== undefined ? { email: u.email, email_verified: u.emailVerified ?? true } : {}),
              ...(u.name !== undefined ? { name: u.name } : {}),
              groups: u.groups ?? []
            }
          }
        }
      }
    }
    const provider = new Provider(issuer, config)
    handler = provider.callback()
  }

  const redirects: string[] = []
  return {
    issuer,
    clientId,
    clientSecret,
    users,
    allow (uri) { redirects.push(uri); configure(redirects) },
    browse: async (start, login) => await browseLogin(issuer, start, login),
    tamperingFetch (change) {
      return async (input, init) => {
        const res = await fetch(input, init)
        const body = init?.body
        if (!(body instanceof URLSearchParams) || body.get('grant_type') !== 'authorization_code' || !res.ok) return res
        const json = await res.json() as Record<string, unknown>
        const claims = decodeJwt(json.id_token as string) as Record<string, unknown>
        change(claims)
        json.id_token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: KID }).sign(privateKey)
        return new Response(JSON.stringify(json), { status: res.status, headers: { 'content-type': 'application/json' } })
      }
    },
    async close () {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

/** IDP_TOOL_ARGV runs this file's tool inside a namespace (see runIdpTool). */
export const IDP_TOOL_ARGV = [process.execPath, fileURLToPath(import.meta.url), 'idp']

/**
 * runIdpTool is the provider and the person, for tests whose controller runs in a
 * namespace (`node oidc-idp.js idp ...`):
 * - `serve PORT REDIRECT_URI USER EMAIL [GROUPS_FILE]` runs the provider on 127.0.0.1:PORT
 *   with one person and prints `issuer URL`; the person's groups are read from GROUPS_FILE
 *   (comma-separated) each time the provider needs them, so a test moves them by writing it;
 * - `login LOGIN_URL USER` opens a login link (the controller's certificate is not
 *   checked: the test's controller is self-signed), logs in at the provider and prints
 *   `page STATUS MESSAGE`, the controller's answer; it exits 1 unless that is 200.
 */
export async function runIdpTool (args: string[]): Promise<void> {
  const [mode, a, b, c, d, groupsFile] = args
  if (mode === 'serve' && a !== undefined && b !== undefined && c !== undefined && d !== undefined) {
    const idp = await startTestIdp(Number(a))
    idp.users.set(c, groupsFile === undefined
      ? { email: d, name: c }
      : { email: d, name: c, get groups () { return readFileSync(groupsFile, 'utf8').split(',').map(g => g.trim()).filter(g => g !== '') } })
    idp.allow(b)
    process.stdout.write(`issuer ${idp.issuer}\n`)
  } else if (mode === 'login' && a !== undefined && b !== undefined) {
    const link = await fetch(a, { redirect: 'manual' })
    const location = link.headers.get('location')
    if (location === null) throw new Error(`the login link answered ${link.status}: ${await link.text()}`)
    const back = await browseLogin(new URL(location).origin, location, b)
    const page = await fetch(back, { redirect: 'manual' })
    const message = (/<p id="message">([^<]*)</.exec(await page.text())?.[1] ?? '').replace(/&#(\d+);/g, (_m, n: string) => String.fromCharCode(Number(n)))
    process.stdout.write(`page ${page.status} ${message}\n`)
    process.exitCode = page.status === 200 ? 0 : 1
  } else {
    process.stderr.write('usage: idp serve PORT REDIRECT_URI USER EMAIL [GROUPS_FILE] | idp login LOGIN_URL USER\n')
    process.exitCode = 2
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'idp') await runIdpTool(process.argv.slice(3))
