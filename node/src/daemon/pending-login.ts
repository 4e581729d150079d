import { WarrenError, isWarrenError, type Node } from '@warren/protocol'
import { waitForLogin } from '../control/login.js'
import type { DaemonContext } from './daemon-context.js'
import type { JoinTarget } from './join.js'
import type { PendingLogin } from '../control/login.js'

/** LOGIN_WAIT_TIMEOUT_MS bounds one long-poll request (the controller answers within 25 s). */
const LOGIN_WAIT_TIMEOUT_MS = 60_000

/**
 * PendingLogins holds the login a node waits for while its user logs in at the identity
 * provider: status shows the URL (NeedsLogin with `authUrl`), and once the controller
 * says the login is done, `joined` connects the node (and clears `authUrl`). A later up
 * or down cancels it.
 */
export interface PendingLogins {
  wait: (target: JoinTarget, login: PendingLogin, joined: (target: JoinTarget, node: Node) => Promise<void>) => void
  cancel: () => void
}

export function createPendingLogins (d: DaemonContext): PendingLogins {
  let current: AbortController | undefined
  const cancel = (): void => {
    current?.abort()
    current = undefined
    d.authUrl = undefined
  }
  return {
    cancel,
    wait (target, login, joined) {
      cancel()
      const abort = current = new AbortController()
      d.authUrl = login.loginUrl
      d.state = 'NeedsLogin'
      d.health.set('login', `log in at ${login.loginUrl} to finish joining the controller at ${target.controller} (the link works once, until ${login.expires})`)
      d.changes.notify('state')
      d.log.info({ controller: target.controller, expires: login.expires }, 'waiting for the user to log in at the identity provider')
      const t = d.makeTransport({ url: target.controller, ...(target.fingerprint !== undefined ? { fingerprint: target.fingerprint } : {}), timeoutMs: LOGIN_WAIT_TIMEOUT_MS })
      waitForLogin(t, login.waitToken, abort.signal)
        .then(async node => {
          if (abort.signal.aborted) return
          current = undefined
          // authUrl stays until `joined` has moved the state on, so status never shows a login with no way forward.
          d.log.info({ node: node.name, user: node.user }, 'the user logged in')
          await joined(target, node)
        })
        .catch((e: unknown) => {
          if (abort.signal.aborted) return
          current = undefined
          d.authUrl = undefined
          const why = isWarrenError(e) ? e : new WarrenError('login_failed', (e as Error).message)
          d.metrics.errors.labels('register').inc()
          d.log.warn({ code: why.code, err: why.message }, 'the login did not complete')
          d.health.set('login', `the login did not complete: ${why.message}`)
          d.changes.notify('state')
        })
        .finally(() => { t.close() })
    }
  }
}
