import t from 'tap'
import fc from 'fast-check'
import ipaddr from 'ipaddr.js'
import { cidrContains, parseCidr } from '../src/policy/addr.js'
import { parsePolicy, parsePorts, parseProto, DEFAULT_POLICY_TEXT, type Policy } from '../src/policy/index.js'

const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob', email: 'bob@example.com' }, { name: 'carl', email: 'carl@example.com' }]

type T = Pick<typeof t, 'same' | 'equal' | 'ok' | 'match'>

/** ok parses and fails the test with every message when the policy has errors. */
function ok (t: T, text: string): Policy {
  const r = parsePolicy(text, { users })
  t.same(r.errors.map(e => e.message), [], 'no errors')
  return r.policy!
}

t.test('good policies parse, including examples from Tailscale documentation', async t => {
  const cases: Array<{ name: string, text: string, want: (p: Policy, t: T) => void }> = [
    {
      name: 'autogroup:self for sources that are users: *, a user, a group, autogroup:member',
      text: '{"groups": {"group:x": []}, "acls": [{"action": "accept", "src": ["*", "alice@", "group:x", "autogroup:member"], "dst": ["autogroup:self:22"]}]}',
      want: (p, t) => { t.same(p.acls[0]!.dst[0]!.selector, { kind: 'autogroup', name: 'self' }) }
    },
    {
      name: 'a bracketed IPv6 prefix as a destination, and autogroup:members (legacy) with a warning',
      text: '{"acls": [{"action": "accept", "src": ["autogroup:members"], "dst": ["[fd7a::2905]/128:80,443", "[fd7a::]/48:*"]}]}',
      want: (p, t) => {
        t.same(p.acls[0]!.src[0]!.selector, { kind: 'autogroup', name: 'member' })
        t.same(p.acls[0]!.dst.map(d => d.selector.kind === 'cidr' ? d.selector.cidr.text : ''), ['fd7a::2905/128', 'fd7a::/48'])
        t.same(p.acls[0]!.dst[0]!.ports, [{ first: 80, last: 80 }, { first: 443, last: 443 }])
        t.same(parsePolicy(p.text).warnings.map(w => w.message), ['1:40: autogroup:members is the legacy name of autogroup:member (write autogroup:member)'])
      }
    },
    {
      name: 'default allow-all',
      text: DEFAULT_POLICY_TEXT,
      want: (p, t) => {
        t.equal(p.acls.length, 1)
        t.same(p.acls[0]!.src.map(s => s.selector), [{ kind: 'all' }])
        t.same(p.acls[0]!.dst[0]!.ports, [{ first: 0, last: 65535 }])
        t.same(p.acls[0]!.protos, [1, 6, 17, 58], 'omitted proto means TCP, UDP, ICMP and ICMPv6')
      }
    },
    {
      name: 'groups, tagOwners, autogroup:self and tests (Tailscale sample)',
      text: `{
        "groups": {
          "group:dev": ["alice@example.com", "bob@example.com"],
          "group:devops": ["carl@example.com"]
        },
        "acls": [
          { "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"] },
          { "action": "accept", "src": ["group:dev"], "dst": ["tag:dev:*"] },
          { "action": "accept", "src": ["group:devops"], "dst": ["tag:prod:*"] },
          { "action": "accept", "src": ["autogroup:member"], "dst": ["tag:monitoring:80,443"] }
        ],
        "tagOwners": {
          "tag:monitoring": ["group:devops"],
          "tag:dev": ["group:devops"],
          "tag:prod": ["group:devops"]
        },
        "tests": [
          { "src": "carl@example.com", "accept": ["tag:prod:80"] },
          { "src": "alice@example.com", "accept": ["tag:dev:80"], "deny": ["tag:prod:80"] }
        ]
      }`,
      want: (p, t) => {
        t.equal(p.acls.length, 4)
        t.same(p.acls[0]!.dst[0]!.selector, { kind: 'autogroup', name: 'self' })
        t.same(p.acls[3]!.dst[0]!.ports, [{ first: 80, last: 80 }, { first: 443, last: 443 }])
        t.same(p.groups.get('group:dev')!.members, ['alice@example.com', 'bob@example.com'])
        t.equal(p.tests.length, 2)
        t.same(p.tests[1]!.deny.map(d => [d.target, d.port]), [['tag:prod', 80]])
        t.same(p.tests[0]!.protos, [6], 'a test without proto checks TCP')
      }
    },
    {
      name: 'hosts aliases for an address and a subnet (Tailscale docs)',
      text: `{
        "hosts": { "example-host-1": "100.100.100.100", "example-network-1": "100.100.101.100/24" },
        "acls": [ { "action": "accept", "src": ["example-host-1"], "dst": ["example-network-1:22,80-90"] } ],
      }`,
      want: (p, t) => {
        const src = p.acls[0]!.src[0]!.selector
        t.equal(src.kind, 'host')
        t.equal(p.hosts.get('example-network-1')!.cidr.text, '100.100.101.0/24', 'host bits are cleared')
        t.same(p.acls[0]!.dst[0]!.ports, [{ first: 22, last: 22 }, { first: 80, last: 90 }])
      }
    },
    {
      name: 'HuJSON: line and block comments, trailing commas everywhere',
      text: `/* header */ {
        // who may reach what
        "acls": [
          {"action": "accept", "src": ["*",], "dst": ["*:*",],}, /* trailing */
        ],
      }`,
      want: (p, t) => { t.equal(p.acls.length, 1) }
    },
    {
      name: 'legacy capitalised keys and users/ports fields',
      text: '{ "ACLs": [ { "Action": "accept", "Users": ["alice@"], "Ports": ["bob@:22"] } ], "TagOwners": {} }',
      want: (p, t) => {
        t.same(p.acls[0]!.src[0]!.selector, { kind: 'user', token: 'alice@' })
        t.same(p.acls[0]!.dst[0]!.selector, { kind: 'user', token: 'bob@' })
      }
    },
    {
      name: 'IPv6 destinations: [addr]:port, addr:port split at the last colon, CIDR',
      text: `{ "acls": [ { "action": "accept", "src": ["fd7a:115c:a1e0::/48", "100.64.0.0/10"],
        "dst": ["[fd7a:115c:a1e0::1]:22", "fd7a:115c:a1e0::2:443", "fd7a:115c:a1e0:ab::/64:*", "100.64.0.7:8080"] } ] }`,
      want: (p, t) => {
        t.same(p.acls[0]!.dst.map(d => d.selector.kind === 'cidr' ? d.selector.cidr.text : '?'),
          ['fd7a:115c:a1e0::1/128', 'fd7a:115c:a1e0::2/128', 'fd7a:115c:a1e0:ab::/64', '100.64.0.7/32'])
        t.same(p.acls[0]!.dst[1]!.ports, [{ first: 443, last: 443 }])
      }
    },
    {
      name: 'proto by name, by number and as a numeric string',
      text: `{ "acls": [
        { "action": "accept", "src": ["*"], "dst": ["*:53"], "proto": "udp" },
        { "action": "accept", "src": ["*"], "dst": ["*:*"], "proto": 47 },
        { "action": "accept", "src": ["*"], "dst": ["*:9000"], "proto": "132" },
        { "action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "icmp" },
        { "action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "ipv6-icmp" },
      ] }`,
      want: (p, t) => { t.same(p.acls.map(a => a.protos), [[17], [47], [132], [1], [58]], 'icmp is ICMPv4 only') }
    },
    {
      name: 'tags owned by users, groups, tags, autogroup:member or nobody',
      text: `{ "groups": {"group:ops": ["bob@"]},
        "tagOwners": { "tag:a": ["alice@"], "tag:b": ["group:ops", "tag:a"], "tag:c": ["autogroup:member"], "tag:d": [] },
        "acls": [ { "action": "accept", "src": ["tag:a", "autogroup:tagged"], "dst": ["tag:d:*"] } ] }`,
      want: (p, t) => { t.same(p.tagOwners.get('tag:b')!.owners, ['group:ops', 'tag:a']) }
    },
    {
      name: 'a policy without "acls" allows everything, as in Tailscale, and says so; "acls": [] denies everything',
      text: '{\n  "groups": {"group:eng": ["alice@"]}\n}',
      want: (p, t) => {
        t.same(p.acls.map(r => [r.src.map(x => x.selector), r.dst.map(x => [x.selector, x.ports]), r.protos]),
          [[[{ kind: 'all' }], [[{ kind: 'all' }, [{ first: 0, last: 65535 }]]], [1, 6, 17, 58]]])
        t.same(parsePolicy(p.text).warnings.map(w => w.message),
          ['1:1: this policy has no "acls" or "grants", so every node may reach every other on every port, as in Tailscale (write "acls": [] to deny everything)'])
        t.equal(parsePolicy('{}').policy!.acls.length, 1, '{} too')
        t.equal(parsePolicy('{"acls": []}').policy!.acls.length, 0)
      }
    }
  ]
  for (const c of cases) {
    t.test(c.name, async t => { c.want(ok(t, c.text), t) })
  }
})

t.test('errors give line:column, what is wrong and what was meant; all are collected', async t => {
  const cases: Array<{ name: string, text: string, errors: string[] }> = [
    {
      name: 'syntax error',
      text: '{\n  "acls": [\n    {"action": "accept" "src": ["*"]}\n  ]\n}',
      errors: ['3:25: syntax error: expected "," between entries']
    },
    {
      name: 'unclosed comment',
      text: '{\n  /* no end\n}',
      errors: ['2:3: syntax error: comment is not closed (missing */)', '3:2: syntax error: expected "}" to close the object']
    },
    {
      name: 'not an object',
      text: '[1]',
      errors: ['1:1: the policy must be an object ({ ... })']
    },
    {
      name: 'typo in a group, bad action, bad ports, missing port, unknown key: all at once',
      text: `{
  "groups": {"group:eng": ["alice@"]},
  "acls": [
    {"action": "allow", "src": ["group:engg"], "dst": ["*:99999"]},
    {"action": "accept", "src": ["*"], "dst": ["tag:web"], "dest": []},
  ],
}`,
      errors: [
        '4:16: action must be "accept" (rules only allow; everything else is denied)',
        '4:33: group group:engg is not defined in "groups" (did you mean group:eng?)',
        '4:56: bad ports "99999" in "*:99999": ports must be *, a number 1-65535, a,b list or a-b range, without spaces (for example 22, 80,443 or 8000-8100)',
        '5:48: dst "tag:web" has no ports: write it as alias:ports (for example tag:web:* or tag:web:22)',
        '5:60: unknown key "dest" in rule 2 (acls[1]) (did you mean dst?)'
      ]
    },
    {
      name: 'nested group and non-users in groups',
      text: '{"groups": {\n  "group:a": ["alice@"],\n  "group:b": ["group:a", "tag:x", "autogroup:member", "alice"]\n}}',
      errors: [
        '3:15: groups cannot contain groups (Tailscale does not allow nested groups): list the members of group:a in group:b instead',
        '3:26: groups contain users only; tag:x is not a user (write alice@, alice@example.com, or idp:GROUP for a group at the identity provider)',
        '3:35: groups contain users only; autogroup:member is not a user (write alice@, alice@example.com, or idp:GROUP for a group at the identity provider)',
        '3:55: "alice" is not a user: write alice@, alice@example.com, or idp:GROUP for a group at the identity provider (did you mean alice@?)'
      ]
    },
    {
      name: 'tag without owners, with a suggestion',
      text: '{"tagOwners": {"tag:web": []},\n"acls": [{"action": "accept", "src": ["tag:webb"], "dst": ["tag:web:80"]}]}',
      errors: ['2:39: tag tag:webb has no entry in "tagOwners"; every tag needs owners (use [] if only auth keys grant it) (did you mean tag:web?)']
    },
    {
      name: 'autogroup:self as a source, unknown autogroup (autogroup:internet is a destination)',
      text: '{"acls": [{"action": "accept", "src": ["autogroup:self", "autogroup:memberz"], "dst": ["autogroup:internet:*"]}]}',
      errors: [
        '1:40: autogroup:self can only be used as a destination (it means the source user\'s own devices) (use autogroup:member in src)',
        '1:58: autogroup:memberz is not supported; Warren knows autogroup:member, autogroup:tagged, autogroup:self, autogroup:internet, autogroup:danger-all, autogroup:owner, autogroup:admin, autogroup:it-admin, autogroup:network-admin, autogroup:billing-admin, autogroup:auditor (did you mean autogroup:member?)'
      ]
    },
    {
      name: 'bad proto, ports with a port-less proto',
      text: '{"acls": [\n{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "tpc"},\n{"action": "accept", "src": ["*"], "dst": ["*:22"], "proto": "icmp"},\n{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": 300}]}',
      errors: [
        '2:61: unknown proto "tpc": use a name (icmp, icmpv4, igmp, ipv4, ip-in-ip, tcp, egp, igp, udp, gre, esp, ah, ipv6-icmp, icmpv6, sctp, dccp) or an IANA number 0-255 (did you mean tcp?)',
        '3:44: "*:22": this rule\'s proto has no ports, so its destinations must use :* (write *:*)',
        '4:61: unknown proto "300": use a name (icmp, icmpv4, igmp, ipv4, ip-in-ip, tcp, egp, igp, udp, gre, esp, ah, ipv6-icmp, icmpv6, sctp, dccp) or an IANA number 0-255'
      ]
    },
    {
      name: 'bad ranges and lists',
      text: '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:90-80", "*:a", "*:1,,2", "*:-1"]}]}',
      errors: [
        '1:54: bad ports "90-80" in "*:90-80": ports must be *, a number 1-65535, a,b list or a-b range, without spaces (for example 22, 80,443 or 8000-8100)',
        '1:65: bad ports "a" in "*:a": ports must be *, a number 1-65535, a,b list or a-b range, without spaces (for example 22, 80,443 or 8000-8100)',
        '1:72: bad ports "1,,2" in "*:1,,2": ports must be *, a number 1-65535, a,b list or a-b range, without spaces (for example 22, 80,443 or 8000-8100)',
        '1:82: bad ports "-1" in "*:-1": ports must be *, a number 1-65535, a,b list or a-b range, without spaces (for example 22, 80,443 or 8000-8100)'
      ]
    },
    {
      name: 'IPv6 without brackets or port',
      text: '{"acls": [{"action": "accept", "src": ["*"], "dst": ["fd7a:115c:a1e0::1"]}]}',
      errors: ['1:54: dst "fd7a:115c:a1e0::1" has no ports: write it as alias:ports (for IPv6 write [fd7a:115c:a1e0::1]:22 or [fd7a:115c:a1e0::1]:*)']
    },
    {
      name: 'unknown alias, with a host suggestion; bad host values',
      text: '{"hosts": {"db-primary": "10.0.0.5", "bad": "10.0.0.300", "user@x": "10.0.0.1"},\n"acls": [{"action": "accept", "src": ["db-primry"], "dst": ["db-primary:5432"]}]}',
      errors: [
        '1:45: hosts["bad"] must be an IPv4/IPv6 address or CIDR, not "10.0.0.300"',
        '1:59: host alias "user@x" must be a plain name (letters, digits, ".", "-", "_"), not a user, tag or address',
        '2:39: "db-primry" is not a known alias: not a host in "hosts", a user (alice@), group:, tag:, autogroup: or an IP/CIDR (did you mean db-primary?)'
      ]
    },
    {
      name: 'missing fields and duplicates',
      text: '{"acls": [{"src": ["*"]}], "acls": []}',
      errors: [
        '1:11: rule 1 (acls[0]) has no "action": add "action": "accept"',
        '1:11: rule 1 (acls[0]) has no "dst": add "dst": ["alias:ports"]',
        '1:28: "acls" is given twice in the policy (first at 1:2); merge them'
      ]
    },
    {
      name: 'tests: autogroups are not identities, groups are sources only, ports must be single numbers',
      text: '{"groups": {"group:a": ["alice@"]}, "tests": [{"src": "autogroup:member", "accept": ["10.0.0.1:22-23", "nobody:80", "group:a:22"]}]}',
      errors: [
        '1:55: tests name one identity, not autogroup:member: use a user (alice@), a tag, a host alias or an IP (or a group)',
        '1:86: "10.0.0.1:22-23" must be a destination and one port, like tag:web:443, alice@:22 or [fd7a::1]:80',
        '1:104: "nobody" is not a user (alice@), tag, host alias or IP',
        '1:117: tests name one identity, not group:a: use a user (alice@), a tag, a host alias or an IP'
      ]
    },
    {
      name: 'autogroup:self is refused for sources that are not users (tags, hosts, addresses, autogroup:tagged), as Tailscale does',
      text: '{"tagOwners": {"tag:a": []}, "hosts": {"h": "10.0.0.1"}, "acls": [{"action": "accept", "src": ["tag:a", "alice@", "h", "autogroup:tagged"], "dst": ["autogroup:self:*"]}]}',
      errors: [
        '1:96: rule 1 (acls[0]): "tag:a" cannot reach autogroup:self, which means the source user\'s own devices; its sources must be users, groups, autogroup:member or * (move "tag:a" to a rule without autogroup:self:*)',
        '1:115: rule 1 (acls[0]): "h" cannot reach autogroup:self, which means the source user\'s own devices; its sources must be users, groups, autogroup:member or * (move "h" to a rule without autogroup:self:*)',
        '1:120: rule 1 (acls[0]): "autogroup:tagged" cannot reach autogroup:self, which means the source user\'s own devices; its sources must be users, groups, autogroup:member or * (move "autogroup:tagged" to a rule without autogroup:self:*)'
      ]
    },
    {
      name: 'port 0, spaces in ports and a prefix length with a leading zero are refused, as Tailscale does',
      text: '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:0", "*: 22", "10.0.0.0/08:22"]}]}',
      errors: [
        '1:54: bad ports "0" in "*:0": ports must be *, a number 1-65535, a,b list or a-b range, without spaces (for example 22, 80,443 or 8000-8100)',
        '1:61: bad ports " 22" in "*: 22": ports must be *, a number 1-65535, a,b list or a-b range, without spaces (for example 22, 80,443 or 8000-8100)',
        '1:70: "10.0.0.0/08" is not a known alias: not a host in "hosts", a user (alice@), group:, tag:, autogroup: or an IP/CIDR'
      ]
    },
    {
      name: 'tests: an empty src is an error (it used to pass parsing and throw when the tests ran)',
      text: '{"tests": [{"src": "", "accept": ["10.0.0.1:22"]}]}',
      errors: ['1:20: test 1 (tests[0]) has an empty "src": name a user (alice@), a tag, a host alias or an IP']
    },
    {
      name: 'tagOwners: autogroups that name no users, undefined groups, tags that do not start with a letter',
      text: '{"tagOwners": {"tag:a": ["autogroup:self", "group:x"], "Tag:B": [], "tag:1server": []}}',
      errors: [
        '1:26: autogroup:self cannot own a tag; use users, groups, tags, autogroup:member or a role (autogroup:owner, autogroup:admin, autogroup:it-admin, autogroup:network-admin, autogroup:billing-admin, autogroup:auditor)',
        '1:44: group group:x is not defined',
        '1:56: tag "Tag:B" must be "tag:" and a name of letters, digits and inner hyphens that starts with a letter (for example tag:web)',
        '1:69: tag "tag:1server" must be "tag:" and a name of letters, digits and inner hyphens that starts with a letter (for example tag:web)'
      ]
    }
  ]
  for (const c of cases) {
    t.test(c.name, async t => {
      const r = parsePolicy(c.text, { users })
      t.same(r.errors.map(e => e.message), c.errors)
      t.equal(r.policy, undefined, 'no policy when there are errors')
      for (const e of r.errors) {
        t.equal(e.name, 'WarrenError')
        t.equal(e.code, 'policy_invalid')
        t.ok(e.line >= 1 && e.column >= 1)
      }
    })
  }
})

t.test('every unsupported Tailscale feature is refused, never ignored', async t => {
  const top = ['derpMap', 'OneCGNATRoute', 'attrs']
  for (const key of top) {
    const r = parsePolicy(`{\n  "acls": [],\n  "${key}": {}\n}`)
    t.same(r.errors.map(e => e.message),
      [`3:3: ${key} is a Tailscale feature Warren does not support; remove it (Warren never ignores a section it cannot enforce)`], key)
  }
  for (const key of ['ip', 'app', 'via']) {
    const r = parsePolicy(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "${key}": []}]}`)
    t.equal(r.errors.length, 1, key)
    t.match(r.errors[0]!.message, new RegExp(`^1:62: "${key}" in rule 1 \\(acls\\[0\\]\\) is not supported by Warren`), key)
  }
  const ipset = parsePolicy('{"acls": [{"action": "accept", "src": ["ipset:office"], "dst": ["*:*"]}]}')
  t.same(ipset.errors.map(e => e.message), ['1:40: IP set ipset:office is not defined in "ipsets"'])
  const unknown = parsePolicy('{"tagowner": {}}')
  t.same(unknown.errors.map(e => e.message), ['1:2: unknown key "tagowner" in the policy (did you mean tagOwners?)'])
})

t.test('users that do not exist yet are warnings, not errors', async t => {
  const r = parsePolicy(`{
  "groups": {"group:a": ["alice@", "zed@", "dora@example.com"]},
  "acls": [{"action": "accept", "src": ["zed@"], "dst": ["bob@example.com:22", "nobody@example.com:22"]}]
}`, { users })
  t.same(r.errors, [])
  t.ok(r.policy)
  t.same(r.warnings.map(w => w.message), [
    '2:36: user zed@ does not exist yet; rules naming it match no device until that user is created',
    '2:44: user dora@example.com does not exist yet; rules naming it match no device until that user is created',
    '3:80: user nobody@example.com does not exist yet; rules naming it match no device until that user is created'
  ])
  t.same(parsePolicy('{"acls": [{"action": "accept", "src": ["zed@"], "dst": ["*:*"]}]}').warnings, [], 'no user list: no warnings')
})

t.test('ports and protos', async t => {
  const ports: Array<[string, unknown]> = [
    ['*', [{ first: 0, last: 65535 }]],
    ['22', [{ first: 22, last: 22 }]],
    ['80,443', [{ first: 80, last: 80 }, { first: 443, last: 443 }]],
    ['1000-2000', [{ first: 1000, last: 2000 }]],
    ['22,8000-8100', [{ first: 22, last: 22 }, { first: 8000, last: 8100 }]],
    ['0', undefined],
    ['0-100', undefined],
    [' 22', undefined],
    ['80, 443', undefined],
    ['65536', undefined],
    ['2-1', undefined],
    ['', undefined],
    ['*,22', undefined],
    ['22,', undefined]
  ]
  for (const [s, want] of ports) t.same(parsePorts(s), want, `ports ${JSON.stringify(s)}`)
  const protos: Array<[string | number, unknown]> = [
    ['tcp', [6]], ['UDP', [17]], ['icmp', [1]], ['icmpv4', [1]], ['ICMP', [1]], ['icmpv6', [58]], ['dccp', [33]], ['ipv6-icmp', [58]], ['sctp', [132]], ['gre', [47]],
    ['esp', [50]], ['ah', [51]], ['igmp', [2]], ['0', [0]], [255, [255]], ['255', [255]], [256, undefined], ['ssh', undefined], [1.5, undefined]
  ]
  for (const [s, want] of protos) t.same(parseProto(s), want, `proto ${String(s)}`)
})

t.test('addresses parse to the same canonical form as ipaddr.js', async t => {
  const v6Arb = fc.tuple(fc.array(fc.constantFrom(0, 0, 0, 1, 0xfd7a, 0xffff, 0x115c), { minLength: 8, maxLength: 8 }), fc.constantFrom('full', 'short', 'upper', 'padded'))
    .map(([groups, style]) => {
      const addr = ipaddr.fromByteArray(groups.flatMap(g => [g >> 8, g & 0xff])) as ipaddr.IPv6
      if (style === 'full') return addr.toNormalizedString()
      if (style === 'upper') return addr.toString().toUpperCase()
      if (style === 'padded') return addr.toNormalizedString().split(':').map(g => g.padStart(4, '0')).join(':')
      return addr.toString()
    })
  const v4Arb = fc.array(fc.nat({ max: 255 }), { minLength: 4, maxLength: 4 }).map(b => b.join('.'))
  fc.assert(fc.property(fc.oneof(v4Arb, v6Arb), fc.nat({ max: 128 }), (text, prefix) => {
    const kind = ipaddr.parse(text).kind()
    const bits = prefix % (kind === 'ipv4' ? 33 : 129)
    const want = ipaddr.parse(text).toString()
    if (parseCidr(text)?.text !== `${want}/${kind === 'ipv4' ? 32 : 128}`) throw new Error(`${text}: ${parseCidr(text)?.text} != ${want}`)
    const [net] = ipaddr.parseCIDR(`${text}/${bits}`)
    const range = parseCidr(`${text}/${bits}`)!
    const host = parseCidr(text)!
    if (!cidrContains(range, host)) throw new Error(`${text}/${bits} does not contain ${text}`)
    const other = kind === 'ipv4' ? ipaddr.parse('100.64.0.1') : ipaddr.parse('fd7a:115c:a1e0::1')
    if (cidrContains(range, parseCidr(other.toString())!) !== (other as ipaddr.IPv4).match(net as ipaddr.IPv4, bits)) throw new Error(`${text}/${bits} containment differs`)
  }), { numRuns: 2000 })
  for (const bad of ['1.2.3.04', '1.2.3', '256.1.1.1', '1::2::3', '1:2:3:4:5:6:7:8:9', 'fd7a::/129', '10.0.0.0/33', 'fd7a::g', '::1%eth0', '']) {
    t.equal(parseCidr(bad), undefined, `refuses ${JSON.stringify(bad)}`)
  }
  t.equal(parseCidr('::ffff:1.2.3.4')?.text, '::ffff:102:304/128')
  t.equal(parseCidr('10.1.2.3/8')?.text, '10.0.0.0/8', 'host bits cleared')
})

t.test('disableIPv4 is accepted with a warning that nodes keep IPv4, and must be a boolean', async t => {
  const on = parsePolicy('{"acls": [], "disableIPv4": true}')
  t.same(on.errors, [])
  t.match(on.warnings.map(w => w.message), [/disableIPv4 is a Tailscale setting Warren does not act on: nodes keep their IPv4 addresses/])
  t.same(parsePolicy('{"acls": [], "disableIPv4": false}').warnings, [], 'false asks for nothing')
  t.match(parsePolicy('{"acls": [], "disableIPv4": "yes"}').errors.map(e => e.message), [/disableIPv4 must be true or false/])
})

t.test('tags may have capitals, as in Tailscale: tag:Server and tag:server are two tags; a tag still starts with a letter', async t => {
  const r = parsePolicy('{"tagOwners": {"tag:Server": [], "tag:server": []}, "acls": [{"action": "accept", "src": ["tag:Server"], "dst": ["tag:server:22"]}]}')
  t.same(r.errors, [])
  t.same([...r.policy!.tagOwners.keys()].sort(), ['tag:Server', 'tag:server'])
  t.match(parsePolicy('{"tagOwners": {"tag:1server": []}, "acls": []}').errors.map(e => e.message), [/tag "tag:1server" must be "tag:" and a name of letters, digits and inner hyphens that starts with a letter/])
  t.match(parsePolicy('{"tagOwners": {"tag:Ser_ver": []}, "acls": []}').errors.length, 1, 'no underscores')
})
