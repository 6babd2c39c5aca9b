/**
 * nginx (Debian nginx-light) as a round-robin load balancer in front of several HTTP servers, standing in for a
 * Kubernetes Service: plain HTTP/1.1 to the backends, no buffering of bodies either way (large blobs stream),
 * long timeouts, and a request that fails to connect is retried on the next backend, as a Service's kube-proxy
 * would not: with `retryOnError: false` a dead backend's requests fail like they would behind a Service.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startProgram, type ChildProgram } from './child-program.js'
import { startOnFreePort } from './free-port.js'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import type { TestContext } from './test-context.js'

export interface Nginx {
  url: string
  stop(): Promise<void>
}

export async function startNginx(backends: string[], opts: { t?: TestContext; retryOnError?: boolean } = {}): Promise<Nginx> {
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
        await writeFile(conf, config(dir, port, backends, opts.retryOnError ?? true))
        program = startProgram('nginx', 'nginx', ['-c', conf, '-e', join(dir, 'error.log')])
        return program
      },
      async (port) => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined)
        return res !== undefined
      },
    )
    const nginx = { url: `http://127.0.0.1:${started.port}`, stop: cleanup }
    opts.t?.teardown(cleanup)
    return nginx
  } catch (err) {
    await cleanup()
    throw err
  }
}

function config(dir: string, port: number, backends: string[], retry: boolean): string {
  return `
daemon off;
master_process off;
user root;
pid ${dir}/nginx-${port}.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
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
      proxy_next_upstream ${retry ? 'error timeout' : 'off'};
    }
  }
}
`
}
