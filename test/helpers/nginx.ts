/**
 * nginx (Debian nginx-light) as a round-robin load balancer in front of several HTTP servers, standing in for a
 * Kubernetes Service: plain HTTP/1.1 to the backends, no buffering of bodies either way (large blobs stream),
 * long timeouts, and a request that fails to connect is retried on the next backend, as a Service's kube-proxy
 * would not: with `retryOnError: false` a dead backend's requests fail like they would behind a Service.
 * With `accel`, it is the front of docs/configuration.md's "nginx in front": it marks what it passes on with the
 * accel header and sends the cache hits regmirror answers with X-Accel-Redirect from the blobs directory itself
 * (the snippet of the docs, kept in step with it), and logs every request it answers (`accessLog()`).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startProgram, type ChildProgram } from './child-program.js'
import { startOnFreePort } from './free-port.js'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import type { TestContext } from './test-context.js'

export interface Nginx {
  url: string
  /** With `accel`: one line per request nginx answered, `<uri> <status> <body bytes> <X-Accel-Redirect regmirror gave or ->`. */
  accessLog(): Promise<string[]>
  stop(): Promise<void>
}

export interface NginxAccel {
  /** `<dataDir>/blobs/sha256` of the mirror behind. */
  blobsDir: string
  /** The mirror's `server.accelRedirect.prefix`. */
  prefix: string
}

export async function startNginx(
  backends: string[],
  opts: { t?: TestContext; retryOnError?: boolean; accel?: NginxAccel } = {},
): Promise<Nginx> {
  const dir = await makeTempDir('nginx')
  let program: ChildProgram | undefined
  const cleanup = async () => {
    await program?.stop()
    await removeTempDir(dir)
  }
  try {
    const started = await startOnFreePort(
      async (port) => {
        const conf = join(dir, `nginx-${port}.conf`)
        await writeFile(conf, config(dir, port, backends, opts.retryOnError ?? true, opts.accel))
        program = startProgram('nginx', 'nginx', ['-c', conf, '-e', join(dir, 'error.log')])
        return program
      },
      async (port) => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined)
        return res !== undefined
      },
    )
    const accessLog = async () => (await readFile(join(dir, 'access.log'), 'utf8').catch(() => '')).split('\n').filter((l) => l.length > 0)
    const nginx = { url: `http://127.0.0.1:${started.port}`, accessLog, stop: cleanup }
    opts.t?.teardown(cleanup)
    return nginx
  } catch (err) {
    await cleanup()
    throw err
  }
}

function config(dir: string, port: number, backends: string[], retry: boolean, accel: NginxAccel | undefined): string {
  return `
daemon off;
master_process off;
user root;
pid ${dir}/nginx-${port}.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  log_format accel '$request_uri $status $body_bytes_sent $upstream_http_x_accel_redirect';
  access_log ${accel ? `${dir}/access.log accel` : 'off'};
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream mirrors {
${backends.map((b) => `    server ${new URL(b).host} max_fails=1 fail_timeout=5s;`).join('\n')}
    keepalive 32;
  }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location / {
      proxy_pass http://mirrors;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
      proxy_next_upstream ${retry ? 'error timeout' : 'off'};${accel ? '\n      proxy_set_header X-Regmirror-Accel 1;' : ''}
    }${accel ? accelLocations(accel) : ''}
  }
}
`
}

/** The internal location over the blobs directory, and the fallback for a blob evicted before nginx opened it. */
function accelLocations(accel: NginxAccel): string {
  return `
    location ${accel.prefix} {
      internal;
      alias ${accel.blobsDir}/;
      sendfile on;
      default_type application/octet-stream;
      etag off;
      add_header Docker-Content-Digest $upstream_http_docker_content_digest;
      add_header Docker-Distribution-Api-Version registry/2.0;
      add_header ETag $upstream_http_etag;
      add_header X-Regmirror-Cache $upstream_http_x_regmirror_cache;
      error_page 404 = @regmirror_body;
    }
    location @regmirror_body {
      proxy_pass http://mirrors$request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
    }`
}
