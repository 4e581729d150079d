/**
 * KNOWN_DIFFERENCES are the corpus cases where Warren knowingly answers otherwise than
 * Tailscale, each with the reason. Such a case is reported as "listed", not as a
 * disagreement; a listed case that stops differing fails the conformance test, so the
 * list stays true.
 */
export const KNOWN_DIFFERENCES: Readonly<Record<string, string>> = {
  'policytest-allpass-grants-only-tag-src-ipv6-literal-dst':
    'a grant to a node\'s IPv6 address written bare (fd7a:115c:a1e0::10) opens nothing in Tailscale\'s answer, while the IPv4 form ' +
    '(...-ip-literal-dst) opens the node; Warren opens the address as written, the same in both families'
}
