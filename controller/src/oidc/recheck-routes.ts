import { WarrenError, IdpRecheckRequest, IdpRecheckResponse } from '@warren/protocol'
import { okResponse, type ControllerPlugin } from '../routes/controller-plugin.js'
import type { IdpRecheck } from './recheck.js'

/**
 * recheckRoutes is `warren admin users recheck [USER]`: POST /v1/users/recheck runs the
 * identity provider check now. Without a provider (`recheck` undefined) it says so.
 */
export function recheckRoutes (recheck: IdpRecheck | undefined): ControllerPlugin {
  return app => {
    app.post('/v1/users/recheck', { schema: { body: IdpRecheckRequest, response: okResponse(IdpRecheckResponse) } }, async req => {
      if (recheck === undefined) {
        throw new WarrenError('oidc_not_configured', 'this controller has no identity provider (start it with --oidc-issuer), so there is nobody to check', { status: 409 })
      }
      return { results: await recheck.run(req.body.user) }
    })
  }
}
