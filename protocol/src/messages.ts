import { Type, type Static, type TSchema, type TObject, type TProperties } from '@sinclair/typebox'
import { UNSAFE_TEXT_CHARS } from './text.js'
import { CapMap, CapValues } from './capabilities.js'
import { NodeAttrs } from './node-attrs.js'
import { HostAttrs, PostureAttrs, UserRoleSchema } from './posture.js'

/**
 * Wire types for every message between CLI, daemon and controller. Each is a JSON
 * Schema (TypeBox) and a TypeScript type from the same source. Objects refuse unknown
 * fields and every string and array has a size limit, so validation at a boundary
 * (see validate.ts) is all the checking the receiver needs.
 */

/** Obj is a closed object: unknown fields are refused. */
export function Obj<T extends TProperties> (props: T, opts: { description?: string } = {}): TObject<T> {
  return Type.Object(props, { additionalProperties: false, ...opts })
}

const Str = (max: number, extra: Record<string, unknown> = {}) => Type.String({ maxLength: max, ...extra })
export const Base64Key = Str(44, { minLength: 44, pattern: '^[A-Za-z0-9+/]{43}=$', description: 'a 32-byte key in base64' })
export const Timestamp = Str(40, { description: 'ISO 8601 time' })
export const NodeName = Str(63, { minLength: 1, pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' })
/** TagName is `tag:` and a name of letters (either case, as in Tailscale: tag:Server and tag:server differ), digits and inner hyphens. */
export const TagName = Str(67, { pattern: '^tag:[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$' })
export const UserName = Str(64, { minLength: 1, pattern: '^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$' })
export const Email = Str(254, { pattern: '^[^@\\s]+@[^@\\s]+$' })
export const Id = Str(64, { minLength: 1, pattern: '^[A-Za-z0-9_-]+$' })
export const IpAddr = Str(45)
export const Endpoint = Str(64, { description: 'host:port or [v6]:port' })
/** Cidr is an address range as text (`192.168.1.0/24`); checkRoute says what a route may be. */
export const Cidr = Str(50)
/** RouteList is a node's advertised or approved subnet routes, canonical and sorted. */
export const RouteList = Type.Array(Cidr, { maxItems: 256 })
export const Duration = Str(16, { pattern: '^\\d+(s|m|h|d|w)?$' })
/**
 * FreeText is text a person typed that others will be shown (descriptions, messages,
 * hostnames): any Unicode except control, line-break and bidi characters, which could
 * corrupt or disguise what a terminal shows. Requests use it; entities keep plain
 * strings, so what was stored before still reads back.
 */
export const FreeText = (max: number, extra: Record<string, unknown> = {}) =>
  Str(max, { pattern: `^[^${UNSAFE_TEXT_CHARS}]*$`, description: 'text without control characters, line breaks or bidi controls', ...extra })
/** EmailInput is an email address in a request: Email without control or bidi characters. */
export const EmailInput = Str(254, { pattern: `^[^@\\s${UNSAFE_TEXT_CHARS}]+@[^@\\s${UNSAFE_TEXT_CHARS}]+$`, description: 'an email address (name@domain) without spaces, control characters or bidi controls' })

// ---------- entities as the API shows them ----------

export const User = Obj({
  id: Id,
  name: UserName,
  email: Type.Optional(Email),
  created: Timestamp,
  /** the user's role (absent in answers of older controllers: member) */
  role: Type.Optional(UserRoleSchema)
})
export type User = Static<typeof User>

export const NodeStatus = Type.Union([Type.Literal('active'), Type.Literal('pending'), Type.Literal('expired')])
export type NodeStatus = Static<typeof NodeStatus>

export const Node = Obj({
  id: Id,
  name: NodeName,
  fqdn: Str(260),
  user: Type.Optional(UserName),
  tags: Type.Array(TagName, { maxItems: 64 }),
  machineKey: Base64Key,
  wgKey: Base64Key,
  ipv4: IpAddr,
  ipv6: IpAddr,
  status: NodeStatus,
  ephemeral: Type.Boolean(),
  online: Type.Boolean(),
  created: Timestamp,
  lastSeen: Type.Optional(Timestamp),
  keyExpiry: Type.Optional(Timestamp),
  endpoints: Type.Array(Endpoint, { maxItems: 32 }),
  /** subnet routes the node offers to forward into (`warren up --advertise-routes`) */
  advertisedRoutes: Type.Optional(RouteList),
  /** routes approved for it (by an admin or the policy's autoApprovers); only those advertised are served */
  approvedRoutes: Type.Optional(RouteList),
  /** its attributes from the policy's nodeAttrs: only in its own map (`self`), absent when it has none */
  attrs: Type.Optional(NodeAttrs),
  /** in the node's own map (`self`) only: the served routes it is the primary router for (the others it stands by for) */
  primaryRoutes: Type.Optional(RouteList),
  /** device posture attributes: `node:` ones the node reports, `custom:` ones admins set */
  postureAttrs: Type.Optional(PostureAttrs)
})
export type Node = Static<typeof Node>

export const AuthKeyInfo = Obj({
  id: Id,
  user: Type.Optional(UserName),
  reusable: Type.Boolean(),
  ephemeral: Type.Boolean(),
  preapproved: Type.Boolean(),
  tags: Type.Array(TagName, { maxItems: 64 }),
  created: Timestamp,
  expires: Timestamp,
  used: Type.Boolean(),
  revoked: Type.Boolean()
})
export type AuthKeyInfo = Static<typeof AuthKeyInfo>

/**
 * ApiKeyScope is what an API key may do: `admin` calls the admin API; `relay` only links a
 * standalone relay at RELAY_LINK_PATH, so a relay host holds no admin power.
 */
export const ApiKeyScope = Type.Union([Type.Literal('admin'), Type.Literal('relay')])
export type ApiKeyScope = Static<typeof ApiKeyScope>

export const ApiKeyInfo = Obj({
  id: Id,
  scope: ApiKeyScope,
  description: Type.Optional(Str(200)),
  created: Timestamp,
  expires: Timestamp,
  revoked: Type.Boolean(),
  lastUsed: Type.Optional(Timestamp)
})
export type ApiKeyInfo = Static<typeof ApiKeyInfo>

export const AuditEntry = Obj({
  seq: Type.Integer(),
  time: Timestamp,
  actor: Str(200),
  action: Str(100),
  target: Str(300),
  detail: Type.Optional(Type.Record(Type.String(), Type.Unknown()))
})
export type AuditEntry = Static<typeof AuditEntry>

// ---------- admin API requests ----------

export const CreateUserRequest = Obj({ name: UserName, email: Type.Optional(EmailInput), role: Type.Optional(UserRoleSchema) })
export type CreateUserRequest = Static<typeof CreateUserRequest>

export const CreateAuthKeyRequest = Obj({
  user: Type.Optional(UserName),
  reusable: Type.Optional(Type.Boolean()),
  ephemeral: Type.Optional(Type.Boolean()),
  preapproved: Type.Optional(Type.Boolean()),
  tags: Type.Optional(Type.Array(TagName, { maxItems: 64 })),
  expiry: Type.Optional(Duration)
})
export type CreateAuthKeyRequest = Static<typeof CreateAuthKeyRequest>

/** CreatedSecret answers a create call that makes a secret: `key` is shown once. */
export const CreateAuthKeyResponse = Obj({ key: Str(200), authKey: AuthKeyInfo })
export type CreateAuthKeyResponse = Static<typeof CreateAuthKeyResponse>

/** CreateApiKeyRequest makes an API key; `scope` defaults to `admin`. */
export const CreateApiKeyRequest = Obj({ expiry: Type.Optional(Duration), description: Type.Optional(FreeText(200)), scope: Type.Optional(ApiKeyScope) })
export type CreateApiKeyRequest = Static<typeof CreateApiKeyRequest>
export const CreateApiKeyResponse = Obj({ key: Str(200), apiKey: ApiKeyInfo })
export type CreateApiKeyResponse = Static<typeof CreateApiKeyResponse>

export const RenameNodeRequest = Obj({ name: NodeName })
export const SetTagsRequest = Obj({ tags: Type.Array(TagName, { maxItems: 64 }) })
/** ApproveRoutesRequest sets the routes approved for a node: exactly these (an empty list approves none). */
export const ApproveRoutesRequest = Obj({ routes: RouteList })
export type ApproveRoutesRequest = Static<typeof ApproveRoutesRequest>
/**
 * NodeRoutes is `warren admin nodes routes NODE`: advertised, approved, served (both), and
 * those served routes it is the primary router for (absent: none).
 */
export const NodeRoutes = Obj({ node: NodeName, advertised: RouteList, approved: RouteList, served: RouteList, primary: Type.Optional(RouteList) })
export type NodeRoutes = Static<typeof NodeRoutes>
export const NodeRoutesResponse = Obj({ routes: NodeRoutes })
export type NodeRoutesResponse = Static<typeof NodeRoutesResponse>

export const ErrorBody = Obj({ error: Obj({ code: Str(64), message: Str(4000), field: Type.Optional(Str(200)) }) })
export type ErrorBody = Static<typeof ErrorBody>

// ---------- machine (node) API ----------

/** ControllerInfo is served at GET /v1/machine/key: what a node needs before registering. */
export const ControllerInfo = Obj({
  version: Type.Integer(),
  /** the controller's X25519 key, for proving possession of the node's WireGuard key */
  controllerKey: Base64Key,
  domain: Str(200)
})
export type ControllerInfo = Static<typeof ControllerInfo>

export const RegisterRequest = Obj({
  version: Type.Integer(),
  /** absent when an already-registered node logs in again with its machine key */
  authKey: Type.Optional(Str(200)),
  machineKey: Base64Key,
  wgKey: Base64Key,
  hostname: FreeText(253, { minLength: 1 }),
  requestTags: Type.Optional(Type.Array(TagName, { maxItems: 64 })),
  /** milliseconds since the epoch; the controller refuses requests far from its clock */
  timestamp: Type.Integer(),
  /** Ed25519 signature over registerSigningPayload() with the machine key */
  signature: Str(100),
  /** wireGuardProof() of the same payload, against ControllerInfo.controllerKey */
  wgProof: Str(100)
})
export type RegisterRequest = Static<typeof RegisterRequest>

export const RegisterResponse = Obj({ node: Node })
export type RegisterResponse = Static<typeof RegisterResponse>

export const REGISTER_DOMAIN = 'warren-register-v1'
export const MAP_DOMAIN = 'warren-map-v1'

/** registerSigningPayload is the exact text that a registration signs. */
export function registerSigningPayload (r: Omit<RegisterRequest, 'signature' | 'wgProof'>): string {
  return JSON.stringify([r.version, r.authKey ?? '', r.machineKey, r.wgKey, r.hostname, r.requestTags ?? [], r.timestamp])
}

/** mapSigningPayload is the exact text that a map session hello signs. */
export function mapSigningPayload (nonce: string, machineKey: string, version: number): string {
  return JSON.stringify([nonce, machineKey, version])
}

// ---------- network map ----------

export const PortRange = Obj({ first: Type.Integer({ minimum: 0, maximum: 65535 }), last: Type.Integer({ minimum: 0, maximum: 65535 }) })
export type PortRange = Static<typeof PortRange>

/**
 * FilterRule allows inbound traffic to this node: from any of `srcs` (CIDRs), with one of
 * `protos` (IANA numbers), to one of `ports` (ignored for protocols without ports). A rule
 * with `dsts` is a subnet router's instead: it allows forwarding the same traffic into those
 * ranges (inside the node's served routes), and nothing to the node itself.
 */
export const FilterRule = Obj({
  srcs: Type.Array(Str(50), { maxItems: 1_000_000 }),
  protos: Type.Array(Type.Integer({ minimum: 0, maximum: 255 }), { maxItems: 256 }),
  ports: Type.Array(PortRange, { maxItems: 65536 }),
  dsts: Type.Optional(Type.Array(Cidr, { maxItems: 256 })),
  /** caps: a capability rule, which gives `srcs` these capabilities on this node and lets no traffic in (protos and ports are empty) */
  caps: Type.Optional(CapMap)
})
export type FilterRule = Static<typeof FilterRule>

export const Peer = Obj({
  id: Id,
  name: NodeName,
  fqdn: Str(260),
  user: Type.Optional(UserName),
  tags: Type.Array(TagName, { maxItems: 64 }),
  wgKey: Base64Key,
  ipv4: IpAddr,
  ipv6: IpAddr,
  endpoints: Type.Array(Endpoint, { maxItems: 32 }),
  online: Type.Boolean(),
  lastSeen: Type.Optional(Timestamp),
  keyExpiry: Type.Optional(Timestamp),
  /** the approved subnet routes this peer serves (see servedRoutes) */
  routes: Type.Optional(RouteList),
  /**
   * those of them it is the primary router for: where several routers serve a route, the
   * controller names one, which keeps it while online (high availability)
   */
  primaryRoutes: Type.Optional(RouteList)
})
export type Peer = Static<typeof Peer>

export const DnsConfig = Obj({
  domain: Str(200),
  magicDns: Type.Boolean()
})
export type DnsConfig = Static<typeof DnsConfig>

/** CertFingerprint is a certificate's SHA-256 as 64 lowercase hex digits. */
export const CertFingerprint = Str(64, { minLength: 64, pattern: '^[0-9a-f]{64}$' })

/** RelayInfo is one relay a node may use when no direct path to a peer works. */
export const RelayInfo = Obj({
  id: Id,
  /** host:port where the relay answers STUN and takes binds for kernel-relayed pairs */
  udp: Type.Optional(Endpoint),
  /**
   * the same over IPv6 (`[v6]:port`) when `udp` is an IPv4 address: a dual-stack relay
   * (protocol version 3). Both sides of a pair bind over one family (nftables cannot
   * forward between IPv4 and IPv6); the controller picks it per pair.
   */
  udp6: Type.Optional(Endpoint),
  /** the relay's X25519 public key (binds are sealed to it) */
  key: Base64Key,
  /** https URL of the relay's TLS path (the controller's own URL for the embedded relay) */
  tls: Type.Optional(Str(300)),
  /**
   * SHA-256 of the certificate a standalone TLS relay serves (64 lowercase hex digits):
   * nodes pin it as they pin the controller. Absent for the embedded relay, which is
   * pinned by the controller's own fingerprint.
   */
  tlsFingerprint: Type.Optional(CertFingerprint)
})
export type RelayInfo = Static<typeof RelayInfo>

/** NatConfig tells a node where to learn its public mapping and which relays exist. */
export const NatConfig = Obj({
  /**
   * STUN servers as host:port; two or more let a node tell an endpoint-independent NAT from
   * a symmetric one. A host-less entry (`:3478`) means the host of the controller URL the
   * node joined with: the controller cannot know the name its nodes reach it by.
   */
  stun: Type.Array(Endpoint, { maxItems: 16 }),
  relays: Type.Array(RelayInfo, { maxItems: 64 })
})
export type NatConfig = Static<typeof NatConfig>

export const Netmap = Obj({
  self: Node,
  peers: Type.Array(Peer, { maxItems: 1_000_000 }),
  filter: Type.Array(FilterRule, { maxItems: 100_000 }),
  dns: DnsConfig,
  /** absent from controllers that offer no STUN or relay */
  nat: Type.Optional(NatConfig)
})
export type Netmap = Static<typeof Netmap>

// ---------- map session (WebSocket /v1/machine/map) ----------

export const MapChallenge = Obj({ type: Type.Literal('challenge'), version: Type.Integer(), nonce: Str(64) })
export type MapChallenge = Static<typeof MapChallenge>

export const MapHello = Obj({
  type: Type.Literal('hello'),
  version: Type.Integer(),
  machineKey: Base64Key,
  nonce: Str(64),
  signature: Str(100),
  endpoints: Type.Array(Endpoint, { maxItems: 32 }),
  /** the subnet routes this node advertises (none when absent) */
  routes: Type.Optional(RouteList),
  /** the node's own posture attributes (node:os, node:osVersion, node:tsVersion) */
  attrs: Type.Optional(HostAttrs),
  /** resume a session from its last sequence number instead of taking a full map */
  resume: Type.Optional(Obj({ session: Str(64), seq: Type.Integer({ minimum: 0 }) }))
})
export type MapHello = Static<typeof MapHello>

export const MapFull = Obj({ type: Type.Literal('map'), session: Str(64), seq: Type.Integer(), netmap: Netmap })
export type MapFull = Static<typeof MapFull>

export const MapDelta = Obj({
  type: Type.Literal('delta'),
  seq: Type.Integer(),
  self: Type.Optional(Node),
  peersChanged: Type.Optional(Type.Array(Peer)),
  peersRemoved: Type.Optional(Type.Array(Id)),
  filter: Type.Optional(Type.Array(FilterRule)),
  dns: Type.Optional(DnsConfig),
  nat: Type.Optional(NatConfig)
})
export type MapDelta = Static<typeof MapDelta>

export const MapError = Obj({ type: Type.Literal('error'), code: Str(64), message: Str(4000) })
export type MapError = Static<typeof MapError>

/**
 * RelayGrant gives a node one side of a kernel-relay allocation toward a peer: WireGuard's
 * endpoint for the peer becomes `endpoint` once the node's RelayBind (sealed to `relayKey`,
 * sent from its WireGuard port to `endpoint`) is acknowledged. Both nodes of the pair get
 * one, each with its own endpoint. Sent outside the numbered delta stream: grants are not
 * part of the netmap, and a node that reconnects asks again.
 */
export const RelayGrant = Obj({
  type: Type.Literal('relay-grant'),
  /** the peer's WireGuard key and node id */
  peer: Base64Key,
  peerId: Id,
  relay: Id,
  relayKey: Base64Key,
  /** the relay's UDP host:port for this node's side */
  endpoint: Endpoint,
  allocation: Id,
  /** the grant ends then unless the node asks again before */
  expires: Timestamp
})
export type RelayGrant = Static<typeof RelayGrant>

/**
 * RelayRevoke ends a relay allocation at once (the pair or a node lost access, or the
 * grant expired), or refuses a request (no `allocation`). `peer` is as the request named
 * it, or the peer's WireGuard key.
 */
export const RelayRevoke = Obj({
  type: Type.Literal('relay-revoke'),
  peer: Str(64),
  allocation: Type.Optional(Id),
  code: Str(64),
  message: Str(1000)
})
export type RelayRevoke = Static<typeof RelayRevoke>

/**
 * PeerCallMeMaybe passes on a peer's CallMeMaybe: the peer (`peer` is its WireGuard key,
 * `peerId` its node id) has just started a direct-path discovery burst toward this node,
 * so this node starts its own at once. Sent outside the numbered delta stream, only
 * between nodes the policy lets talk.
 */
export const PeerCallMeMaybe = Obj({ type: Type.Literal('call-me-maybe'), peer: Base64Key, peerId: Id })
export type PeerCallMeMaybe = Static<typeof PeerCallMeMaybe>

/** Messages from the controller to a node. */
export const ServerMessage = Type.Union([MapChallenge, MapFull, MapDelta, MapError, RelayGrant, RelayRevoke, PeerCallMeMaybe])
export type ServerMessage = Static<typeof ServerMessage>

export const ClientEndpoints = Obj({ type: Type.Literal('endpoints'), endpoints: Type.Array(Endpoint, { maxItems: 32 }) })
export type ClientEndpoints = Static<typeof ClientEndpoints>

/**
 * RelayRequest asks for a kernel-relay allocation toward a peer (its node id or WireGuard
 * key); asking again before the grant expires renews it. Answered with RelayGrant to
 * both nodes of the pair, or RelayRevoke (refused) to the asker.
 */
export const RelayRequest = Obj({ type: Type.Literal('relay-request'), peer: Str(64, { minLength: 1 }) })
export type RelayRequest = Static<typeof RelayRequest>

/**
 * RelayRelease says a node no longer needs its kernel-relay allocation toward a peer (its
 * node id or WireGuard key), say because the direct path has held for a while. The
 * allocation is freed at the relay, and revoked to both nodes, once neither node of the
 * pair holds it (a node holds it from its request until its release); a request later
 * asks for one again. Releasing what is not held changes nothing and is not answered.
 */
export const RelayRelease = Obj({ type: Type.Literal('relay-release'), peer: Str(64, { minLength: 1 }) })
export type RelayRelease = Static<typeof RelayRelease>

/**
 * CallMeMaybe says this node has just started a direct-path discovery burst toward `peer`
 * (its node id or WireGuard key): TTL-limited probes now, full ones a punch delay later.
 * The controller passes it on (PeerCallMeMaybe) so the peer starts its own burst at once
 * and both nodes' TTL-limited probes open their NATs before either side's full probe
 * arrives, however far apart their clocks are. It is advisory: rate-limited per node, and
 * dropped unanswered when the policy does not let the two talk.
 */
export const CallMeMaybe = Obj({ type: Type.Literal('call-me-maybe'), peer: Str(64, { minLength: 1 }) })
export type CallMeMaybe = Static<typeof CallMeMaybe>

/**
 * Logout says an ephemeral node is leaving for good (an app's embedded node closing): the
 * controller deletes it at once instead of after its time away. Other nodes are kept.
 */
export const Logout = Obj({ type: Type.Literal('logout') })
export type Logout = Static<typeof Logout>

/** Messages from a node to the controller. */
export const ClientMessage = Type.Union([MapHello, ClientEndpoints, RelayRequest, RelayRelease, CallMeMaybe, Logout])
export type ClientMessage = Static<typeof ClientMessage>

// ---------- relay link (a standalone relay's control connection to the controller) ----------

/** RELAY_LINK_PATH is where a standalone relay opens its control WebSocket (with a relay-scoped API key). */
export const RELAY_LINK_PATH = '/v1/relay/link'

/** RelayLinkHello is a standalone relay's first message: who it is and where nodes reach it. */
export const RelayLinkHello = Obj({
  type: Type.Literal('relay-hello'),
  version: Type.Integer(),
  id: Id,
  /** where the kernel UDP relay answers; absent for a relay that runs only a TLS relay */
  udp: Type.Optional(Endpoint),
  /** where it answers over IPv6 too, for a dual-stack relay (RelayInfo.udp6; version 3) */
  udp6: Type.Optional(Endpoint),
  key: Base64Key,
  /** the relay also runs a TLS relay here: nodes reach it at `url` and pin `fingerprint` */
  tls: Type.Optional(Obj({ url: Str(300), fingerprint: CertFingerprint }))
})
export type RelayLinkHello = Static<typeof RelayLinkHello>

/** RelayLinkReply answers a numbered command: the allocation made, or why not. */
export const RelayLinkReply = Obj({
  type: Type.Literal('relay-reply'),
  req: Type.Integer({ minimum: 0 }),
  ok: Type.Boolean(),
  allocation: Type.Optional(Obj({ id: Id, ports: Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { minItems: 2, maxItems: 2 }) })),
  message: Type.Optional(Str(1000))
})
export type RelayLinkReply = Static<typeof RelayLinkReply>

/** Messages from a standalone relay to the controller. */
export const RelayLinkUp = Type.Union([RelayLinkHello, RelayLinkReply])
export type RelayLinkUp = Static<typeof RelayLinkUp>

/**
 * RelayMember is a node that may use a standalone TLS relay, with the nodes the policy
 * lets it talk to (its map's peers).
 */
export const RelayMember = Obj({
  id: Id,
  name: NodeName,
  machineKey: Base64Key,
  wgKey: Base64Key,
  peers: Type.Array(Id, { maxItems: 1_000_000 })
})
export type RelayMember = Static<typeof RelayMember>

/** RELAY_MEMBERS_PER_MESSAGE bounds the members, and the removed ids, one relay-members message carries. */
export const RELAY_MEMBERS_PER_MESSAGE = 256

/**
 * RelayMembers keeps a standalone TLS relay's members in step with the controller:
 * `members` are added or replace those with their id, and `removed` ids are dropped.
 * A full list starts with `reset` and ends with `done` (one message may be both): the
 * members it did not list are dropped at `done`, so nobody it lists is cut halfway.
 * Each change of the mesh is sent at once, in as few messages as its size allows.
 */
export const RelayMembers = Obj({
  type: Type.Literal('relay-members'),
  reset: Type.Optional(Type.Boolean()),
  done: Type.Optional(Type.Boolean()),
  members: Type.Array(RelayMember, { maxItems: RELAY_MEMBERS_PER_MESSAGE }),
  removed: Type.Array(Id, { maxItems: RELAY_MEMBERS_PER_MESSAGE })
})
export type RelayMembers = Static<typeof RelayMembers>

/** RelayLinkCommand is what the controller's broker asks of a standalone relay. */
export const RelayLinkCommand = Type.Union([
  RelayMembers,
  Obj({ type: Type.Literal('relay-welcome') }),
  Obj({ type: Type.Literal('relay-allocate'), req: Type.Integer({ minimum: 0 }), nodeKeys: Type.Array(Base64Key, { minItems: 2, maxItems: 2 }), expiresAt: Type.Integer() }),
  Obj({ type: Type.Literal('relay-renew'), allocation: Id, expiresAt: Type.Integer() }),
  Obj({ type: Type.Literal('relay-release'), req: Type.Integer({ minimum: 0 }), allocation: Id }),
  MapError
])
export type RelayLinkCommand = Static<typeof RelayLinkCommand>

/** applyDelta returns the netmap after a delta; the input is not changed. */
export function applyDelta (nm: Netmap, d: MapDelta): Netmap {
  let peers = nm.peers
  if (d.peersRemoved !== undefined || d.peersChanged !== undefined) {
    const byId = new Map(peers.map(p => [p.id, p]))
    for (const id of d.peersRemoved ?? []) byId.delete(id)
    for (const p of d.peersChanged ?? []) byId.set(p.id, p)
    peers = [...byId.values()]
  }
  return {
    self: d.self ?? nm.self,
    peers,
    filter: d.filter ?? nm.filter,
    dns: d.dns ?? nm.dns,
    ...((d.nat ?? nm.nat) !== undefined ? { nat: d.nat ?? nm.nat } : {})
  }
}

export type { TSchema }

// ---------- admin API responses ----------
// Every admin answer is an object with one named field, so new fields can be added later.

export const UserResponse = Obj({ user: User })
export type UserResponse = Static<typeof UserResponse>
export const UserList = Obj({ users: Type.Array(User) })
export type UserList = Static<typeof UserList>
/** IdpRecheckRequest runs the identity provider check now, for one user or (no user) all of them. */
export const IdpRecheckRequest = Obj({ user: Type.Optional(UserName) })
export type IdpRecheckRequest = Static<typeof IdpRecheckRequest>
/**
 * IdpRecheckResult is one user's check: `unchanged`, `changed` (new groups), `refused`
 * (the provider refused the refresh or the allow lists leave the user out: the user's
 * nodes were expired), `unavailable` (the provider could not be asked; nothing changed)
 * or `no-token` (no refresh token is stored: the user logged in without offline_access).
 */
export const IdpRecheckResult = Obj({
  user: UserName,
  outcome: Type.Union([Type.Literal('unchanged'), Type.Literal('changed'), Type.Literal('refused'), Type.Literal('unavailable'), Type.Literal('no-token')]),
  groups: Type.Array(Str(256)),
  message: Type.Optional(Str(2000))
})
export type IdpRecheckResult = Static<typeof IdpRecheckResult>
export const IdpRecheckResponse = Obj({ results: Type.Array(IdpRecheckResult) })
export type IdpRecheckResponse = Static<typeof IdpRecheckResponse>
export const NodeResponse = Obj({ node: Node })
export type NodeResponse = Static<typeof NodeResponse>
export const NodeList = Obj({ nodes: Type.Array(Node) })
export type NodeList = Static<typeof NodeList>
export const AuthKeyResponse = Obj({ authKey: AuthKeyInfo })
export type AuthKeyResponse = Static<typeof AuthKeyResponse>
export const AuthKeyList = Obj({ authKeys: Type.Array(AuthKeyInfo) })
export type AuthKeyList = Static<typeof AuthKeyList>
export const ApiKeyResponse = Obj({ apiKey: ApiKeyInfo })
export type ApiKeyResponse = Static<typeof ApiKeyResponse>
export const ApiKeyList = Obj({ apiKeys: Type.Array(ApiKeyInfo) })
export type ApiKeyList = Static<typeof ApiKeyList>
export const AuditList = Obj({ entries: Type.Array(AuditEntry) })
export type AuditList = Static<typeof AuditList>

// ---------- policy admin API (/v1/policy) ----------

/** PolicyText is a policy file (HuJSON) as sent to or from the controller. */
export const PolicyText = Str(512 * 1024)
const PolicyLine = Str(4000)

/** PolicyVersionInfo is one entry of the policy's history; version 0 is the built-in allow-all. */
export const PolicyVersionInfo = Obj({
  version: Type.Integer({ minimum: 0 }),
  actor: Str(200),
  time: Timestamp,
  message: Str(1000)
})
export type PolicyVersionInfo = Static<typeof PolicyVersionInfo>

export const PolicyInfo = Obj({
  version: Type.Integer({ minimum: 0 }),
  actor: Str(200),
  time: Timestamp,
  message: Str(1000),
  text: PolicyText
})
export type PolicyInfo = Static<typeof PolicyInfo>

export const PolicyHistory = Obj({ versions: Type.Array(PolicyVersionInfo) })
export type PolicyHistory = Static<typeof PolicyHistory>

export const SetPolicyRequest = Obj({ text: PolicyText, message: Type.Optional(FreeText(1000)) })
export type SetPolicyRequest = Static<typeof SetPolicyRequest>

export const RollbackPolicyRequest = Obj({ version: Type.Integer({ minimum: 0 }), message: Type.Optional(FreeText(1000)) })
export type RollbackPolicyRequest = Static<typeof RollbackPolicyRequest>

/** SetPolicyResponse: the new version and any warnings (users that do not exist yet). */
export const SetPolicyResponse = Obj({ version: Type.Integer({ minimum: 0 }), warnings: Type.Array(PolicyLine) })
export type SetPolicyResponse = Static<typeof SetPolicyResponse>

/** PolicyCheckRequest: `text` to check; without it, the policy in force (for `test`). */
export const PolicyCheckRequest = Obj({ text: Type.Optional(PolicyText) })
export type PolicyCheckRequest = Static<typeof PolicyCheckRequest>

/** PolicyCheckResponse lists every problem as `line:column: what (suggestion)`. */
export const PolicyCheckResponse = Obj({ ok: Type.Boolean(), errors: Type.Array(PolicyLine), warnings: Type.Array(PolicyLine) })
export type PolicyCheckResponse = Static<typeof PolicyCheckResponse>

export const PolicyDiffRequest = Obj({ text: PolicyText })
export type PolicyDiffRequest = Static<typeof PolicyDiffRequest>

/** PolicyAccess is one (source, destination, protocols, ports) by name, as `diff` shows it. */
export const PolicyAccess = Obj({
  kind: Type.Union([Type.Literal('identity'), Type.Literal('node')]),
  src: Str(300),
  dst: Str(300),
  proto: Str(200),
  ports: Str(4000)
})
export type PolicyAccess = Static<typeof PolicyAccess>

/**
 * PolicyCapChange is one capability that a source gains, loses or holds with other values
 * at a destination, as `diff` shows it: the values before (absent when gained) and after
 * (absent when lost).
 */
export const PolicyCapChange = Obj({
  kind: Type.Union([Type.Literal('identity'), Type.Literal('node')]),
  src: Str(300),
  dst: Str(300),
  cap: Str(256),
  change: Type.Union([Type.Literal('gained'), Type.Literal('lost'), Type.Literal('changed')]),
  before: Type.Optional(CapValues),
  after: Type.Optional(CapValues)
})
export type PolicyCapChange = Static<typeof PolicyCapChange>

/** PolicyDiffResponse: traffic gained and lost, and capability changes (absent from older controllers). */
export const PolicyDiffResponse = Obj({
  gained: Type.Array(PolicyAccess),
  lost: Type.Array(PolicyAccess),
  caps: Type.Optional(Type.Array(PolicyCapChange))
})
export type PolicyDiffResponse = Static<typeof PolicyDiffResponse>

export const PolicyExplainRequest = Obj({
  src: Str(300, { minLength: 1 }),
  dst: Str(300, { minLength: 1 }),
  port: Type.Integer({ minimum: 0, maximum: 65535 }),
  proto: Type.Optional(Str(20))
})
export type PolicyExplainRequest = Static<typeof PolicyExplainRequest>

export const PolicyExplainResponse = Obj({
  allowed: Type.Boolean(),
  rules: Type.Array(Obj({ index: Type.Integer(), line: Type.Integer(), text: Str(20000) })),
  /** caps: each capability the source gets at the destination, by the grant that gives it (absent from older controllers) */
  caps: Type.Optional(Type.Array(Obj({ cap: Str(256), values: CapValues, index: Type.Integer(), line: Type.Integer(), text: Str(20000) }))),
  message: Str(100000)
})
export type PolicyExplainResponse = Static<typeof PolicyExplainResponse>

// ---------- LocalAPI (CLI and SDK to the daemon, over its Unix socket) ----------

/** BackendState is where the daemon stands, as `warren status` shows it. */
export const BackendState = Type.Union([
  Type.Literal('NeedsLogin'), Type.Literal('NeedsApproval'), Type.Literal('Starting'), Type.Literal('Running'), Type.Literal('Stopped')
])
export type BackendState = Static<typeof BackendState>

/** LocalPeerPath is how WireGuard reaches one peer: straight, through a kernel UDP relay, or a TLS relay. */
export const LocalPeerPath = Obj({
  kind: Type.Union([Type.Literal('direct'), Type.Literal('udp-relay'), Type.Literal('tls-relay')]),
  /** WireGuard's endpoint for the peer: the peer, a relay port, or a loopback port of the TLS relay client */
  endpoint: Endpoint,
  /** the relay's id when relayed */
  relay: Type.Optional(Str(100)),
  /** round trip of the last path probe */
  latencyMs: Type.Optional(Type.Number({ minimum: 0 }))
})
export type LocalPeerPath = Static<typeof LocalPeerPath>

export const LocalPeerStatus = Obj({
  id: Id,
  name: NodeName,
  fqdn: Str(260),
  user: Type.Optional(UserName),
  tags: Type.Array(TagName, { maxItems: 64 }),
  ipv4: IpAddr,
  ipv6: IpAddr,
  wgKey: Base64Key,
  /** online as the controller last said */
  online: Type.Boolean(),
  /** from `wg show`: where packets from this peer last came from */
  endpoint: Type.Optional(Endpoint),
  lastHandshake: Type.Optional(Timestamp),
  rxBytes: Type.Integer({ minimum: 0 }),
  txBytes: Type.Integer({ minimum: 0 }),
  /** the path the daemon chose for WireGuard; absent when it has none (the map's first endpoint is used) */
  path: Type.Optional(LocalPeerPath),
  /** approved subnet routes the peer offers */
  routes: Type.Optional(RouteList),
  /** those of them this node sends through the peer (with --accept-routes; the most specific router wins) */
  routesInUse: Type.Optional(RouteList),
  /** those of them the peer is the primary router for (others serving the same range stand by) */
  primaryRoutes: Type.Optional(RouteList)
})
export type LocalPeerStatus = Static<typeof LocalPeerStatus>

/** LocalMeshPeer is a peer as the map has it: LocalPeerStatus without what WireGuard counts, and without the path. */
export const LocalMeshPeer = Obj({ ...Type.Pick(LocalPeerStatus, ['id', 'name', 'fqdn', 'user', 'tags', 'ipv4', 'ipv6', 'wgKey', 'online']).properties })
export type LocalMeshPeer = Static<typeof LocalMeshPeer>

/**
 * DataPlaneInfo says which WireGuard implementation carries this node's mesh traffic:
 * kernel WireGuard, or a wireguard-go program (which one, and what it says its version is).
 */
export const DataPlaneInfo = Obj({
  implementation: Type.Union([Type.Literal('kernel'), Type.Literal('wireguard-go')]),
  /** what `wireguard-go --version` printed; absent for the kernel and for an adopted interface */
  version: Type.Optional(Str(64)),
  /** the wireguard-go program that was started */
  path: Type.Optional(Str(4096)),
  /** the distribution package the program belongs to, with its version ("wireguard-go 0.0.20231211-1~bpo12+1") */
  package: Type.Optional(Str(200)),
  /** the program's file was replaced (say by an upgrade) after it started: the running build is the old one */
  replaced: Type.Optional(Type.Boolean())
})
export type DataPlaneInfo = Static<typeof DataPlaneInfo>

/** describeDataPlane is one line for logs and `warren status`: "wireguard-go 0.0.20230223 (/usr/bin/wireguard-go, package wireguard-go 0.0.20231211-1~bpo12+1)". */
export function describeDataPlane (info: DataPlaneInfo): string {
  const where = [info.path, info.package !== undefined ? `package ${info.package}` : undefined,
    info.replaced === true ? 'replaced on disk since it started: \'warren down\' and \'warren up\' run the new one' : undefined].filter(x => x !== undefined)
  return `${info.implementation}${info.version !== undefined ? ` ${info.version}` : ''}${where.length > 0 ? ` (${where.join(', ')})` : ''}`
}

/**
 * RoutingPrefs are a node's subnet-route settings from `warren up`: routes to advertise,
 * whether to use the routes peers offer (off by default, as Tailscale on Linux), and
 * whether to masquerade what this node forwards into its subnets (on by default).
 */
export const RoutingPrefs = Obj({
  advertiseRoutes: RouteList,
  acceptRoutes: Type.Boolean(),
  snatSubnetRoutes: Type.Boolean(),
  /** the exit node to send internet traffic through (its name or mesh address); absent: none */
  exitNode: Type.Optional(Str(260, { minLength: 1 })),
  /** with an exit node: directly connected LAN subnets stay reached directly */
  exitNodeAllowLanAccess: Type.Optional(Type.Boolean())
})
export type RoutingPrefs = Static<typeof RoutingPrefs>

export const LocalStatus = Obj({
  version: Type.Integer(),
  backendState: BackendState,
  /** why the daemon is not Running, or what is degraded, one line each */
  health: Type.Array(Str(1000), { maxItems: 32 }),
  controller: Type.Optional(Obj({ url: Str(300), connected: Type.Boolean() })),
  /** while the daemon waits for its user to log in at the identity provider: the URL to open */
  authUrl: Type.Optional(Str(2000)),
  interfaceName: Str(15),
  /** the WireGuard implementation in use; absent until the interface is up (and from older daemons) */
  dataPlane: Type.Optional(DataPlaneInfo),
  self: Type.Optional(Node),
  peers: Type.Array(LocalPeerStatus, { maxItems: 1_000_000 }),
  /** this node's route settings from `warren up` */
  routing: Type.Optional(RoutingPrefs)
})
export type LocalStatus = Static<typeof LocalStatus>

/**
 * LocalPeers is GET /v1/peers: this node and its peers as the map has them, which is what
 * name lookups need. Unlike GET /v1/status it reads no WireGuard counters (`wg show dump`).
 */
export const LocalPeers = Obj({
  backendState: BackendState,
  self: Type.Optional(Node),
  peers: Type.Array(LocalMeshPeer, { maxItems: 1_000_000 })
})
export type LocalPeers = Static<typeof LocalPeers>

/**
 * LocalWatchEvent is one line of GET /v1/watch (newline-delimited JSON): first a
 * `snapshot` of the state and peers, then what changed, as it changes.
 * - `state`: the backend state changed
 * - `peer-added` / `peer-removed`: the policy or the mesh gave this node a peer, or took it
 * - `peer-up` / `peer-down`: the controller says a peer came online or went offline
 * - `peer-changed`: a peer's name, tags, owner, addresses or path changed (`fields` says which)
 * - `policy-applied`: a new inbound filter is enforced on this node
 */
export const LocalWatchEvent = Obj({
  type: Type.Union([
    Type.Literal('snapshot'), Type.Literal('state'), Type.Literal('peer-added'), Type.Literal('peer-removed'),
    Type.Literal('peer-up'), Type.Literal('peer-down'), Type.Literal('peer-changed'), Type.Literal('policy-applied')
  ]),
  time: Timestamp,
  backendState: Type.Optional(BackendState),
  peers: Type.Optional(Type.Array(LocalPeerStatus, { maxItems: 1_000_000 })),
  peer: Type.Optional(LocalPeerStatus),
  fields: Type.Optional(Type.Array(Str(32), { maxItems: 16 }))
})
export type LocalWatchEvent = Static<typeof LocalWatchEvent>

export const LocalUpRequest = Obj({
  controller: Str(300, { minLength: 1 }),
  authKey: Type.Optional(Str(200)),
  fingerprint: Type.Optional(Str(200)),
  hostname: Type.Optional(FreeText(253, { minLength: 1 })),
  advertiseTags: Type.Optional(Type.Array(TagName, { maxItems: 64 })),
  /** absent fields keep the value of the last `up` (defaults: none, false, true) */
  advertiseRoutes: Type.Optional(RouteList),
  acceptRoutes: Type.Optional(Type.Boolean()),
  snatSubnetRoutes: Type.Optional(Type.Boolean()),
  /** offer this node as an exit node (advertise 0.0.0.0/0 and ::/0 besides advertiseRoutes); false stops */
  advertiseExitNode: Type.Optional(Type.Boolean()),
  /** the exit node to use (name or mesh address); "" stops using one */
  exitNode: Type.Optional(Str(260)),
  exitNodeAllowLanAccess: Type.Optional(Type.Boolean())
})
export type LocalUpRequest = Static<typeof LocalUpRequest>

export const LocalIpResponse = Obj({ name: NodeName, addresses: Type.Array(IpAddr, { maxItems: 2 }) })
export type LocalIpResponse = Static<typeof LocalIpResponse>

export const LocalPingRequest = Obj({ peer: Str(260, { minLength: 1 }) })
export type LocalPingRequest = Static<typeof LocalPingRequest>

export const LocalPingResponse = Obj({
  peer: NodeName,
  address: IpAddr,
  latencyMs: Type.Number({ minimum: 0 }),
  /** true when WireGuard talks to the peer's own endpoint (no relay) */
  direct: Type.Boolean(),
  endpoint: Type.Optional(Endpoint)
})
export type LocalPingResponse = Static<typeof LocalPingResponse>

/** LocalNetcheckServer is what one STUN server said of this node's WireGuard port. */
export const LocalNetcheckServer = Obj({
  /** the entry of the map's nat.stun (host-less entries are the controller's host) */
  server: Str(300),
  /** address:port it was reached at, once resolved */
  address: Type.Optional(Endpoint),
  /** the WireGuard port's public mapping as this server saw it */
  mapped: Type.Optional(Endpoint),
  /** round trip of the answered request */
  latencyMs: Type.Optional(Type.Number({ minimum: 0 })),
  /** why there is no answer */
  error: Type.Optional(Str(1000))
})
export type LocalNetcheckServer = Static<typeof LocalNetcheckServer>

/** LocalNetcheckFamily is what the STUN servers of one address family said of the WireGuard port (LocalNetcheck.ipv6). */
export const LocalNetcheckFamily = Obj({
  /** whether any server of the family answered: UDP over it leaves and comes back */
  udp: Type.Boolean(),
  /** the distinct mappings the servers saw (over IPv6 with no NAT: the host's own address) */
  mappings: Type.Array(Endpoint, { maxItems: 16 }),
  /** as LocalNetcheck's, over the family's servers */
  endpointIndependent: Type.Optional(Type.Boolean())
})
export type LocalNetcheckFamily = Static<typeof LocalNetcheckFamily>

/** LocalNetcheck is `warren netcheck`: how this node's WireGuard port reaches the Internet. */
export const LocalNetcheck = Obj({
  /** whether any IPv4 STUN server answered: UDP leaves and comes back */
  udp: Type.Boolean(),
  /** the distinct public IPv4 mappings of the WireGuard port the servers saw */
  mappings: Type.Array(Endpoint, { maxItems: 16 }),
  /**
   * true when two or more IPv4 servers saw the same mapping (peers can reach it: endpoint-
   * independent), false when they saw different ones (symmetric NAT: a relay is needed),
   * absent when fewer than two answered
   */
  endpointIndependent: Type.Optional(Type.Boolean()),
  /** the same over IPv6, when the map lists IPv6 STUN servers (or names with IPv6 addresses) */
  ipv6: Type.Optional(LocalNetcheckFamily),
  wgPort: Type.Integer({ minimum: 0, maximum: 65535 }),
  servers: Type.Array(LocalNetcheckServer, { maxItems: 16 }),
  checkedAt: Timestamp
})
export type LocalNetcheck = Static<typeof LocalNetcheck>

export const LocalWhoisResponse = Obj({
  node: Obj({ id: Id, name: NodeName, fqdn: Str(260), ipv4: IpAddr, ipv6: IpAddr, tags: Type.Array(TagName, { maxItems: 64 }) }),
  user: Type.Optional(UserName),
  tags: Type.Array(TagName, { maxItems: 64 }),
  /** whether the address is this node's own */
  self: Type.Boolean(),
  /** the application capabilities the policy gives this address on the asking node (grants' `app`); absent from older daemons */
  capabilities: Type.Optional(CapMap)
})
export type LocalWhoisResponse = Static<typeof LocalWhoisResponse>
