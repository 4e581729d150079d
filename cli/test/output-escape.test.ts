import t from 'tap'
import { formatTable } from '../src/output.js'

t.test('formatTable escapes control, line-break and bidi characters so stored text cannot corrupt a terminal', async t => {
  const rows = [
    { id: 'k1', description: 'ok\u001b[2J\u001b[31mred' },
    { id: 'k2', description: 'two\nlines\r' },
    { id: 'k3', description: 'evil\u202egnp.exe \u2066x\u2069 \u200f' },
    { id: 'k4', description: 'nul\u0000 del\u007f c1\u009b tab\t' },
    { id: 'k5', description: 'zoë — تجربة' }
  ]
  const text = formatTable(rows, [{ header: 'id', value: r => r.id }, { header: 'description', value: r => r.description }])
  t.equal(text, [
    'ID  DESCRIPTION',
    'k1  ok\\x1b[2J\\x1b[31mred',
    'k2  two\\nlines\\r',
    'k3  evil\\u202egnp.exe \\u2066x\\u2069 \\u200f',
    'k4  nul\\x00 del\\x7f c1\\x9b tab\\t',
    'k5  zoë — تجربة',
    ''
  ].join('\n'))
  for (const line of text.split('\n')) t.notMatch(line, /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/, 'no line holds a control or bidi character')
})
