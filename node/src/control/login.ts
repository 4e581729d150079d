import {
  WarrenError, validate, LoginStartResponse, LoginWaitResponse, LOGIN_START_PATH, LOGIN_WAIT_PATH,
  type ControllerInfo, type Node
} from '@warren/protocol'
import { expectOk, type JsonTransport } from '@warren/sdk/transport'
import { signedRegistration, type RegisterInit } from './register.js'

/** PendingLogin is a login the user must finish in a browser at `loginUrl`. */
export interface PendingLogin extends LoginStartResponse {
  controller: ControllerInfo
}

/**
 * startLogin asks the controller for a login at its identity provider, with the same
 * signed registration as registerNode (without an auth key). The answer's login URL is
 * for the user; the wait token stays with the node.
 */
export async function startLogin (transport: JsonTransport, init: Omit<RegisterInit, 'authKey'>): Promise<PendingLogin> {
  const { controller, req } = await signedRegistration(transport, init)
  const res = await transport.request('POST', LOGIN_START_PATH, req)
  return { controller, ...validate(LoginStartResponse, expectOk(res, 'starting a login'), 'login answer') }
}

/**
 * waitForLogin long-polls the controller until the user logged in (it gives the node as
 * registered), the login was refused or expired (a WarrenError with the controller's
 * message), or `signal` aborts.
 */
export async function waitForLogin (transport: JsonTransport, waitToken: string, signal: AbortSignal): Promise<Node> {
  while (!signal.aborted) {
    const res = await transport.request('POST', LOGIN_WAIT_PATH, { waitToken })
    if (signal.aborted) break
    const answer = validate(LoginWaitResponse, expectOk(res, 'waiting for the login'), 'login wait answer')
    if (answer.status === 'done' && answer.node !== undefined) return answer.node
  }
  throw new WarrenError('login_cancelled', 'the login was cancelled by a later up or down')
}
