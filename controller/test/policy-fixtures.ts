/** POLICY is a policy that uses every kind of selector, for the policy tests (and the fuzz test's corpus). */
export const POLICY = `{
  "groups": { "group:eng": ["alice@example.com", "dora@"] },
  "tagOwners": { "tag:web": ["group:eng"], "tag:db": ["bob@"] },
  "hosts": { "db-primary": "100.64.0.10", "office": "192.0.2.0/24" },
  "acls": [
    // engineers reach the web tier
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:80,443"] },
    { "action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432", "db-primary:5432"], "proto": "tcp" },
    { "action": "accept", "src": ["office"], "dst": ["tag:web:22"] },
    { "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"] },
    { "action": "accept", "src": ["fd7a:115c:a1e0::/48"], "dst": ["[fd7a:115c:a1e0::10]:53"], "proto": "udp" },
  ],
}`
