import { Type, type Static } from '@sinclair/typebox'
import { Obj, Node, Timestamp } from './messages.js'

/**
 * Login with the identity provider (OIDC), for nodes that join without an auth key.
 * The node posts its signed registration (a RegisterRequest without `authKey`) to
 * LOGIN_START_PATH and gets a single-use login URL for its user, and a wait token that
 * only the node holds. It then long-polls LOGIN_WAIT_PATH with the token until the user
 * has logged in (the answer carries the node as registered) or the login was refused
 * (an error answer with the same message the user saw in the browser).
 */
export const LOGIN_START_PATH = '/v1/machine/login'
export const LOGIN_WAIT_PATH = '/v1/machine/login/wait'
/** LOGIN_CALLBACK_PATH is the redirect URI to register at the identity provider, on the controller's URL. */
export const LOGIN_CALLBACK_PATH = '/oidc/callback'

export const LoginStartResponse = Obj({
  /** the URL to open in a browser; it works once, until `expires` */
  loginUrl: Type.String({ maxLength: 2000 }),
  /** the secret the node waits with; never shown to the user */
  waitToken: Type.String({ minLength: 1, maxLength: 100 }),
  expires: Timestamp
})
export type LoginStartResponse = Static<typeof LoginStartResponse>

export const LoginWaitRequest = Obj({ waitToken: Type.String({ minLength: 1, maxLength: 100 }) })
export type LoginWaitRequest = Static<typeof LoginWaitRequest>

/** LoginWaitResponse is `pending` until the user logged in, then `done` with the node. */
export const LoginWaitResponse = Obj({
  status: Type.Union([Type.Literal('pending'), Type.Literal('done')]),
  node: Type.Optional(Node)
})
export type LoginWaitResponse = Static<typeof LoginWaitResponse>
