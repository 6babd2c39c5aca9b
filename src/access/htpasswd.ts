import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import bcrypt from 'bcryptjs'
import { LRUCache } from 'lru-cache'
import { RegmirrorError } from '../errors.js'

// bcrypt as htpasswd -B, CNCF distribution and nginx write it ($2y$), and its other spellings.
const BCRYPT_RE = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/
/** How long a verified user and password are believed without checking the hash again. */
const REMEMBER_MS = 60_000
/** bcrypt is slow by design: at most this many checks at once, and this many waiting. */
const CONCURRENT = 2
const QUEUE = 64

/** Parses an htpasswd file of bcrypt entries; throws an Error naming the users whose entries are not bcrypt. */
export function parseHtpasswd(text: string, file: string): Map<string, string> {
  const users = new Map<string, string>()
  const unsupported: string[] = []
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const i = line.indexOf(':')
    const user = i < 0 ? line : line.slice(0, i)
    const hash = i < 0 ? '' : line.slice(i + 1)
    if (!BCRYPT_RE.test(hash)) unsupported.push(user.slice(0, 64))
    else users.set(user, hash)
  }
  if (unsupported.length > 0) {
    throw new Error(`${file}: only bcrypt entries are supported (htpasswd -B); not bcrypt: ${unsupported.join(', ')}`)
  }
  return users
}

/**
 * The users of an htpasswd file, and the check of a user's password. A verified pair is
 * remembered briefly (keyed by a hash of the password, never the password), so a client that
 * sends its credentials with every request costs one bcrypt check a minute; checks run at most
 * two at a time, so a client guessing passwords cannot take the CPU from everyone else.
 */
export class Htpasswd {
  private users: Map<string, string>
  private readonly verified = new LRUCache<string, boolean>({ max: 10_000, ttl: REMEMBER_MS })
  private running = 0
  private readonly waiting: (() => void)[] = []

  constructor(private readonly file: string) {
    this.users = this.read()
  }

  /** Reads the file again; throws (keeping the users it had) if it does not load. */
  reload(): void {
    this.users = this.read()
    this.verified.clear()
  }

  get size(): number {
    return this.users.size
  }

  async verify(user: string, password: string): Promise<boolean> {
    const hash = this.users.get(user)
    if (hash === undefined) return false
    const key = `${user}\0${hash}\0${createHash('sha256').update(password).digest('hex')}`
    const known = this.verified.get(key)
    if (known !== undefined) return known
    await this.slot()
    try {
      const ok = await bcrypt.compare(password, hash)
      this.verified.set(key, ok)
      return ok
    } finally {
      this.release()
    }
  }

  private read(): Map<string, string> {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (err) {
      throw new Error(`cannot read the htpasswd file ${this.file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    return parseHtpasswd(text, this.file)
  }

  private async slot(): Promise<void> {
    if (this.running < CONCURRENT) {
      this.running++
      return
    }
    if (this.waiting.length >= QUEUE) {
      throw new RegmirrorError('TOOMANYREQUESTS', 'too many credential checks at once; try again', { retryAfter: '1' })
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve))
  }

  private release(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.running--
  }
}
