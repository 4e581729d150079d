import { Type } from '@sinclair/typebox'
import { WarrenError, Obj, AuditList } from '@warren/protocol'
import { okResponse, type ControllerPlugin } from './controller-plugin.js'

const AuditQuery = Obj({
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: 'a number of entries, 1-1000' })),
  after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'a sequence number' }))
})

/** auditRoutes are `warren admin audit`: GET /v1/audit?limit=N&after=SEQ (newest 100 by default). */
export const auditRoutes: ControllerPlugin = (app, { state }) => {
  app.get('/v1/audit', { schema: { querystring: AuditQuery, response: okResponse(AuditList) } }, async req => {
    const { limit: limitText, after } = req.query
    const limit = limitText === undefined ? 100 : Number(limitText)
    if (limit < 1 || limit > 1000) throw new WarrenError('invalid_input', 'querystring/limit must be between 1 and 1000', { field: 'querystring/limit' })
    return { entries: state.listAudit({ limit, ...(after !== undefined ? { after: Number(after) } : {}) }) }
  })
}
