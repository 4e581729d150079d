import { IdpRecheckRequest, IdpRecheckResponse } from '@warren/protocol'
import { okResponse, type ControllerPlugin } from '../routes/controller-plugin.js'
import type { IdpRecheck } from './recheck.js'

/** recheckRoutes is `warren admin users recheck [USER]`: POST /v1/users/recheck runs the identity provider check now. */
export function recheckRoutes (recheck: IdpRecheck): ControllerPlugin {
  return app => {
    app.post('/v1/users/recheck', { schema: { body: IdpRecheckRequest, response: okResponse(IdpRecheckResponse) } },
      async req => ({ results: await recheck.run(req.body.user) }))
  }
}
