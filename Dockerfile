# regmirror's container image (README: "Container image").
#
#   docker build -t regmirror .
#   docker run -d -p 5000:5000 --stop-timeout 35 -v regmirror-data:/var/lib/regmirror \
#     -v "$PWD/regmirror.yaml:/etc/regmirror/regmirror.yaml:ro" regmirror
#
# BASE is any image laid out like the official node:24-slim (node and npm in /usr/local/bin, Debian's useradd).
# Where Docker Hub cannot be reached, scripts/node-base.sh assembles one from Debian and npm packages.
ARG BASE=node:24-slim

# --- build: compile TypeScript, then keep only the production dependencies ---------------------------------
FROM ${BASE} AS build
WORKDIR /src
# The lockfile first, so that a change to the sources alone reuses the installed dependencies. --ignore-scripts:
# `prepare` would build before the sources are here; nothing regmirror needs runs an install script.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund --no-update-notifier
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && chmod 755 dist/cli.js

# --- runtime ----------------------------------------------------------------------------------------------
FROM ${BASE}
# A fixed uid/gid, not 1000 (the base's `node` user), so that host directories and Kubernetes
# securityContext can name it. The data directory is the user's; the application stays root's, read-only to it.
# Not --system: Debian's useradd warns that 10001 is past the system range. --no-log-init: no lastlog entry, which
# for a uid this high is a sparse file that grows into megabytes in a layer.
RUN groupadd --gid 10001 regmirror \
 && useradd --uid 10001 --gid regmirror --home-dir /var/lib/regmirror --no-create-home --no-log-init \
      --shell /usr/sbin/nologin regmirror \
 && mkdir -p /var/lib/regmirror /etc/regmirror \
 && chown regmirror:regmirror /var/lib/regmirror
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# `docker exec CONTAINER regmirror verify` and the other commands, with the same environment as the server.
RUN ln -s /app/dist/cli.js /usr/local/bin/regmirror

# The environment outranks the file (docs/configuration.md): change these two with `docker run -e`, not in
# regmirror.yaml. REGMIRROR_DEFAULT_CONFIG: the file is read if it is there, and the mirror starts without it.
ENV NODE_ENV=production \
    REGMIRROR_DATA=/var/lib/regmirror \
    REGMIRROR_LISTEN=0.0.0.0:5000 \
    REGMIRROR_DEFAULT_CONFIG=/etc/regmirror/regmirror.yaml
VOLUME /var/lib/regmirror
# Plain HTTP, and HTTPS when server.tls has a certificate.
EXPOSE 5000 5443
USER 10001:10001

# No curl in the image: node asks /healthz on the port of REGMIRROR_LISTEN (the part after the last ':').
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.REGMIRROR_LISTEN.split(':').pop() + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node is PID 1, with no init in between: `serve` traps SIGTERM (docker stop) and SIGINT itself, finishes the
# responses in flight (timeouts.shutdown, 30s by default: give `docker stop -t` / stop_grace_period as long) and
# exits 0; it starts no child processes, so there are no zombies to reap.
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["serve"]
