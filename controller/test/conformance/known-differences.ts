/** DOMAIN_ASSOCIATION: why Warren accepts domains Tailscale does not associate with the tailnet. */
const DOMAIN_ASSOCIATION =
  'Tailscale accepts user:*@DOMAIN and localpart:*@DOMAIN in ssh rules only for the domains associated with the tailnet ' +
    '(in this capture example.com alone, and not as EXAMPLE.COM); Warren has no tailnet domain: any domain is accepted (localpart:*@DOMAIN ' +
    'with a warning when no user has an email there yet)'

/**
 * EXIT_BEYOND: why an exit node forwards less in Warren under `*`. Only such cases' forwards
 * beyond autogroup:internet may differ (policy-conformance.test.ts holds them to it).
 */
export const EXIT_BEYOND =
  'Tailscale\'s `*` lets an exit node forward to every address, private ranges (its LAN) and the mesh\'s range included; Warren\'s `*` ' +
    'through an exit node forwards to autogroup:internet only (a LAN is reached through a subnet route), which is less access; ' +
    'to the internet itself both forward the same'

/** IP_POOL: why Warren refuses nodeAttrs' ipPool. */
const IP_POOL =
  'nodeAttrs\' ipPool hands the targeted nodes addresses from a pool; Warren assigns every node its address at registration ' +
    'and keeps it, so it refuses ipPool by name rather than accept a policy whose addresses it would not give'

/**
 * KNOWN_DIFFERENCES are the corpus cases where Warren knowingly answers otherwise than
 * Tailscale, each with the reason. Such a case is reported as "listed", not as a
 * disagreement; a listed case that stops differing fails the conformance test, so the
 * list stays true.
 */
export const KNOWN_DIFFERENCES: Readonly<Record<string, string>> = {
  'policytest-allpass-grants-only-tag-src-ipv6-literal-dst':
    'a grant to a node\'s IPv6 address written bare (fd7a:115c:a1e0::10) opens nothing in Tailscale\'s answer, while the IPv4 form ' +
    '(...-ip-literal-dst) opens the node; Warren opens the address as written, the same in both families',
  'ssh-b4': DOMAIN_ASSOCIATION,
  'ssh-d1': DOMAIN_ASSOCIATION,
  'ssh-e1': DOMAIN_ASSOCIATION,
  'ssh-e2': DOMAIN_ASSOCIATION,
  'sshtest-malformed-dst-bare-ipv6':
    'an sshTest to a node\'s IPv6 address written bare (fd7a:115c:a1e0::10) fails in Tailscale\'s answer, while the IPv4 form ' +
    '(...-bare-ipv4) passes; Warren resolves an address to its device in both families, as for tests (see above)',
  'routes-ea1-exitnode-field-basic': EXIT_BEYOND,
  'routes-ea3-exitnode-field-dual-node': EXIT_BEYOND,
  'routes-ea4-exitnode-plus-routes-dual-node': EXIT_BEYOND,
  'routes-ea11-both-fields-same-tag': EXIT_BEYOND,
  'routes-ea13-both-fields-exitnode-matches': EXIT_BEYOND,
  'nodeattrs-attr-c14-suggest-exit-node-approved': EXIT_BEYOND,
  'nodeattrs-ippool-g1-admin': IP_POOL,
  'nodeattrs-ippool-g2-group': IP_POOL,
  'nodeattrs-ippool-g3-mixed': IP_POOL
}
