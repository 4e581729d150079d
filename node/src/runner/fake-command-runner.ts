import { CommandError, type CommandResult, type RecordedCommand, type RecordingRunner } from './command-runner.js'

/** FakeReply is what a scripted command answers; missing fields mean empty output, exit 0. */
export type FakeReply = Partial<CommandResult>

/** FakeHandler answers a command; it may change the fake system's state. */
export type FakeHandler = (argv: string[], input: string | undefined) => FakeReply | undefined

/**
 * FakeCommandRunner records every argv and answers from a scripted table: the first rule
 * whose pattern matches `argv.join(' ')` answers. Unmatched commands succeed silently
 * unless `strict` is set, so a unit test states only the commands it cares about.
 */
export interface FakeCommandRunner extends RecordingRunner {
  /** on adds a rule; later rules take precedence over earlier ones */
  on: (pattern: RegExp | string, reply: FakeReply | FakeHandler) => FakeCommandRunner
  /** reset forgets the recorded calls (not the rules) */
  reset: () => void
}

/** createFakeCommandRunner returns a FakeCommandRunner with no rules. */
export function createFakeCommandRunner (opts: { strict?: boolean } = {}): FakeCommandRunner {
  const calls: RecordedCommand[] = []
  const rules: Array<{ pattern: RegExp, reply: FakeReply | FakeHandler }> = []
  const fake: FakeCommandRunner = {
    calls,
    matching: pattern => calls.filter(c => pattern.test(c.argv.join(' '))),
    on (pattern, reply) {
      rules.unshift({ pattern: typeof pattern === 'string' ? new RegExp(`^${pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : pattern, reply })
      return fake
    },
    reset () { calls.length = 0 },
    async run (argv, runOpts = {}) {
      const args = [...argv]
      calls.push({ argv: args, hadInput: runOpts.input !== undefined })
      const line = args.join(' ')
      const rule = rules.find(r => r.pattern.test(line))
      if (rule === undefined && opts.strict === true) {
        throw new CommandError(args, 127, `fake runner has no rule for \`${line}\``)
      }
      const reply = typeof rule?.reply === 'function' ? rule.reply(args, runOpts.input) : rule?.reply
      const result = { stdout: reply?.stdout ?? '', stderr: reply?.stderr ?? '', exitCode: reply?.exitCode ?? 0 }
      if (result.exitCode !== 0 && runOpts.allowFail !== true) throw new CommandError(args, result.exitCode, result.stderr)
      return result
    }
  }
  return fake
}
