import type { Config } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import { watchFiles } from '../file-watch.js'
import { Htpasswd } from './htpasswd.js'
import { AccessRules, inNetworks, networksOf, type Identity } from './rules.js'

export type { Identity } from './rules.js'

/** The parts of a request access is decided on. */
export interface AccessRequest {
  authorization: string | undefined
  /** The client's address (the socket's peer). */
  address: string
}

/**
 * Who may pull what, decided once per request before any service sees it (http/handle.ts):
 * credentials from `auth.htpasswd` (HTTP Basic), networks allowed without them, and the access
 * rules. A refusal of an authenticated client is DENIED (403); an anonymous one is UNAUTHORIZED
 * (401) with a Basic challenge, which is what makes `docker login` and friends ask for credentials.
 */
export class Access {
  private readonly htpasswd: Htpasswd | undefined
  private readonly anonymous
  private readonly rules: AccessRules
  private readonly challenge: string
  private watcher: { stop(): void } | undefined

  constructor(config: Config, log: Logger) {
    const file = config.auth.htpasswd
    this.htpasswd = file === undefined ? undefined : new Htpasswd(file)
    this.anonymous = networksOf(config.auth.anonymous.cidrs)
    this.rules = new AccessRules(config.auth.rules)
    this.challenge = `Basic realm="${config.auth.realm.replace(/["\\]/g, '')}"`
    if (file !== undefined && this.htpasswd) {
      const h = this.htpasswd
      this.watcher = watchFiles([file], config.server.reloadInterval, () => {
        try {
          h.reload()
          log.info({ file, users: h.size }, 'htpasswd file reloaded')
        } catch (err) {
          log.error({ err: (err as Error).message }, 'htpasswd file not reloaded; keeping the previous users')
        }
      })
    }
  }

  stop(): void {
    this.watcher?.stop()
  }

  /** Whether clients must authenticate at all (without, only network rules can refuse). */
  get enabled(): boolean {
    return this.htpasswd !== undefined
  }

  /** Who is asking; throws UNAUTHORIZED when credentials are needed and missing or wrong. */
  async identify(req: AccessRequest): Promise<Identity> {
    const basic = parseBasic(req.authorization)
    if (this.htpasswd && basic) {
      if (await this.htpasswd.verify(basic.user, basic.password)) return { user: basic.user, address: req.address }
      throw this.unauthorized('the user name or password is wrong')
    }
    if (!this.htpasswd || inNetworks(this.anonymous, req.address)) return { address: req.address }
    throw this.unauthorized('authentication required')
  }

  /** Whether `who` may pull from `repo` of `upstream`: what search and the catalog may show them. */
  may(who: Identity, upstream: string, repo: string): boolean {
    return this.rules.allows(who, upstream, repo)
  }

  /** Throws unless `who` may pull from `repo` of `upstream`. */
  authorize(who: Identity, upstream: string, repo: string): void {
    if (this.may(who, upstream, repo)) return
    if (who.user !== undefined) {
      throw new RegmirrorError('DENIED', `${who.user} may not pull ${upstream}/${repo}`, { detail: { upstream, repository: repo } })
    }
    throw this.unauthorized(`pulling ${upstream}/${repo} needs credentials`)
  }

  private unauthorized(message: string): RegmirrorError {
    return new RegmirrorError('UNAUTHORIZED', message, { challenge: this.challenge })
  }
}

function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '')
  if (!m) return undefined
  const text = Buffer.from(m[1] as string, 'base64').toString('utf8')
  const i = text.indexOf(':')
  return i < 0 ? undefined : { user: text.slice(0, i), password: text.slice(i + 1) }
}
