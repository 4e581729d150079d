import { WarrenError, Obj, Id, NodeResponse, NodeList, RenameNodeRequest, SetTagsRequest, ApproveRoutesRequest, NodeRoutesResponse, type NodeRoutes } from '@warren/protocol'
import { okResponse, byField, type ControllerPlugin } from './controller-plugin.js'
import { NoBody } from './schemas.js'

const NodeParams = Obj({ node: Id })

/**
 * nodeRoutes are `warren admin nodes ...`: list, get, approve, rename, expire, tag,
 * subnet routes (list, approve) and delete, each addressed by node id or name.
 */
export const nodeRoutes: ControllerPlugin = (app, { state, actor, primaryRoutes }) => {
  /** routesOf is a node's routes with those it is the primary router for */
  const routesOf = (id: string): NodeRoutes => {
    const r = state.nodeRoutes(id)
    const primary = primaryRoutes?.(state.getNode(id)?.id ?? id) ?? []
    return primary.length > 0 ? { ...r, primary } : r
  }
  const requireNode = (idOrName: string) => {
    const node = state.getNode(idOrName)
    if (node === undefined) throw new WarrenError('node_not_found', `no node with id or name '${idOrName}'; 'warren admin nodes list' shows them`, { status: 404 })
    return node
  }
  app.get('/v1/nodes', { schema: { response: okResponse(NodeList) } }, async () => ({ nodes: state.listNodes().sort(byField('name')) }))
  app.get('/v1/nodes/:node', { schema: { params: NodeParams, response: okResponse(NodeResponse) } }, async req => ({ node: requireNode(req.params.node) }))
  app.post('/v1/nodes/:node/approve', { schema: { params: NodeParams, body: NoBody, response: okResponse(NodeResponse) } }, async req => {
    return { node: await state.approveNode(req.params.node, actor(req)) }
  })
  app.post('/v1/nodes/:node/rename', { schema: { params: NodeParams, body: RenameNodeRequest, response: okResponse(NodeResponse) } }, async req => {
    return { node: await state.renameNode(req.params.node, req.body.name, actor(req)) }
  })
  app.post('/v1/nodes/:node/expire', { schema: { params: NodeParams, body: NoBody, response: okResponse(NodeResponse) } }, async req => {
    return { node: await state.expireNode(req.params.node, actor(req)) }
  })
  app.post('/v1/nodes/:node/tags', { schema: { params: NodeParams, body: SetTagsRequest, response: okResponse(NodeResponse) } }, async req => {
    return { node: await state.setTags(req.params.node, req.body.tags, actor(req)) }
  })
  app.get('/v1/nodes/:node/routes', { schema: { params: NodeParams, response: okResponse(NodeRoutesResponse) } }, async req => {
    requireNode(req.params.node)
    return { routes: routesOf(req.params.node) }
  })
  app.post('/v1/nodes/:node/routes', { schema: { params: NodeParams, body: ApproveRoutesRequest, response: okResponse(NodeRoutesResponse) } }, async req => {
    const node = await state.approveRoutes(requireNode(req.params.node).id, req.body.routes, actor(req))
    return { routes: routesOf(node.id) }
  })
  app.delete('/v1/nodes/:node', { schema: { params: NodeParams, response: okResponse(NodeResponse) } }, async req => {
    return { node: await state.deleteNode(req.params.node, actor(req)) }
  })
}
