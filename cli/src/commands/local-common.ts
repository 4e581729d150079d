import { Option, type Command } from 'commander'
import { PROTOCOL_VERSION, type LocalStatus } from '@warren/protocol'
import { createLocalClient, type LocalClient } from '@warren/sdk'
import { cliIo } from '../cli-io.js'

/** LocalOptions are what every command that talks to the local daemon takes. */
export interface LocalOptions {
  socket?: string
  json?: boolean
}

/** socketOption is `--socket PATH` (or $WARREN_SOCKET): which daemon to talk to. */
export function socketOption (): Option {
  return new Option('--socket <path>', 'the daemon\'s LocalAPI socket (default /var/run/warren/warrend.sock)').env('WARREN_SOCKET')
}

/** openLocal makes a LocalAPI client for the socket the command names. */
export function openLocal (opts: LocalOptions, timeoutMs?: number): LocalClient {
  return createLocalClient({ ...(opts.socket !== undefined ? { socketPath: opts.socket } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) })
}

const warnedRuns = new WeakSet<object>()

/** checkVersion warns once per run on stderr when the daemon speaks another protocol version than this CLI. */
export function checkVersion (st: LocalStatus): LocalStatus {
  const io = cliIo()
  if (st.version !== PROTOCOL_VERSION && !warnedRuns.has(io)) {
    warnedRuns.add(io)
    io.stderr.write(`warren: warning: this CLI speaks protocol ${PROTOCOL_VERSION} but the daemon speaks ${st.version}; upgrade the older one so both run the same release\n`)
  }
  return st
}

/** localCommand adds the options shared by local commands. */
export function localCommand (program: Command, spec: string, description: string): Command {
  return program.command(spec).description(description).addOption(socketOption())
}
