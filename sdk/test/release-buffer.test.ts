import t from 'tap'
import { releaseBuffer } from '../src/transport/release-buffer.js'

/** releaseBuffer gives back a read buffer's memory at once, and never touches memory that others share. */

t.test('a buffer that owns all of its memory is emptied: the memory is given back', async t => {
  const buf = Buffer.allocUnsafeSlow(64 * 1024).fill(7)
  releaseBuffer(buf)
  t.equal(buf.buffer.byteLength, 0)
  t.equal(buf.length, 0)
})

t.test('a view of part of a buffer keeps its bytes, and so does the rest of the buffer', async t => {
  const whole = Buffer.allocUnsafeSlow(1000).fill(1)
  const part = whole.subarray(10, 20)
  releaseBuffer(part)
  t.same([...part], new Array(10).fill(1))
  t.equal(whole.length, 1000)
})

t.test('a small buffer from Node\'s shared pool keeps its bytes, and so do its neighbours', async t => {
  const a = Buffer.from('hello')
  const b = Buffer.from('world')
  releaseBuffer(a)
  t.equal(a.toString(), 'hello')
  t.equal(b.toString(), 'world')
})

t.test('a buffer on shared memory is left alone', async t => {
  const shared = Buffer.from(new SharedArrayBuffer(16)).fill(3)
  releaseBuffer(shared)
  t.same([...shared], new Array(16).fill(3))
})
