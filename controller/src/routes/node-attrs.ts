import { Obj, Id, NodeResponse, PostureAttrsResponse, SetNodeAttrsRequest } from '@warren/protocol'
import { okResponse, type ControllerPlugin } from './controller-plugin.js'

const NodeParams = Obj({ node: Id })

/**
 * nodeAttrRoutes are `warren admin nodes attrs ...`: a node's posture attributes (GET), and
 * setting or removing its custom ones (POST `{set: {"custom:x": value}, unset: ["custom:y"]}`).
 */
export const nodeAttrRoutes: ControllerPlugin = (app, { state, actor }) => {
  app.get('/v1/nodes/:node/attrs', { schema: { params: NodeParams, response: okResponse(PostureAttrsResponse) } }, async req => state.nodeAttrs(req.params.node))
  app.post('/v1/nodes/:node/attrs', { schema: { params: NodeParams, body: SetNodeAttrsRequest, response: okResponse(NodeResponse) } }, async req => {
    return { node: await state.setNodeAttrs(req.params.node, req.body, actor(req)) }
  })
}
