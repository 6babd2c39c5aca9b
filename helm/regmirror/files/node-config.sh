#!/bin/sh
# Keeps containerd's hosts.toml for each registry of this release on the node, and removes them when it stops.
#
# Run by the node-config DaemonSet (POSIX sh: busybox). Reads:
#   $SOURCE/registries        one "KEY DIRECTORY" a line: the ConfigMap key of a hosts.toml and the directory under
#                             $HOSTS_DIR it goes to (the registry name, e.g. docker.io, registry.internal:5000)
#   $SOURCE/KEY               the hosts.toml, with @MIRROR_URL@ where the mirror's URL goes
#   $MIRROR_URL               the mirror as the node's containerd reaches it
#   $MARKER                   the first line of every file this release writes: what it may replace and remove
#   $INTERVAL                 seconds between two checks
#
# containerd reads hosts.toml on each pull, so a file written here takes effect without a restart. A file
# that is not ours (another first line) is left alone, and said so once. Ours for a registry no longer listed
# are removed. On SIGTERM (the pod stopping: helm uninstall, or a rollout of this DaemonSet, whose new pod writes
# them again) all of ours are removed, and with them the directory if nothing else is in it; containerd then
# pulls from the registries directly again.
set -u

SOURCE=${SOURCE:-/config}
HOSTS_DIR=${HOSTS_DIR:-/host/certs.d}
INTERVAL=${INTERVAL:-30}

case "$MIRROR_URL" in
  http://*|https://*) ;;
  *) echo "MIRROR_URL is not an http(s) URL: '$MIRROR_URL' (no Service environment variables yet? restarting)" >&2; exit 1 ;;
esac
case "$MIRROR_URL" in
  *'$('*|*'|'*|*'&'*|*'\'*|*' '*)
    echo "MIRROR_URL is not usable: '$MIRROR_URL' (the Service did not exist when this pod started? restarting)" >&2
    exit 1 ;;
esac

ours() { [ -f "$1" ] && [ "$(head -n 1 "$1")" = "$MARKER" ]; }

warned=" "
write_all() {
  wanted=" "
  while read -r key dir; do
    [ -n "$key" ] || continue
    wanted="$wanted$dir "
    target="$HOSTS_DIR/$dir/hosts.toml"
    if [ -e "$target" ] && ! ours "$target"; then
      case "$warned" in
        *" $target "*) ;;
        *) echo "leaving $target alone: it was not written by this release"; warned="$warned$target " ;;
      esac
      continue
    fi
    want="$(sed "s|@MIRROR_URL@|$MIRROR_URL|g" "$SOURCE/$key")"
    if [ ! -f "$target" ] || [ "$(cat "$target")" != "$want" ]; then
      mkdir -p "$HOSTS_DIR/$dir" &&
        printf '%s\n' "$want" >"$target.tmp" &&
        mv -f "$target.tmp" "$target" &&
        echo "wrote $target"
    fi
  done <"$SOURCE/registries"
  # A registry no longer in the list (an upgrade changed it; the old pod may have seen the new list already).
  remove_ours_except "$wanted"
}

# Removes every hosts.toml of this release whose registry is not in $1 (" dir dir ... ").
remove_ours_except() {
  for target in "$HOSTS_DIR"/*/hosts.toml; do
    ours "$target" || continue
    dir="${target%/hosts.toml}"
    case "$1" in
      *" ${dir##*/} "*) continue ;;
    esac
    rm -f "$target" && echo "removed $target"
    rmdir "$dir" 2>/dev/null || true
  done
}

sleeper=
# The sleep is ended too: in a container the kernel ends it with PID 1, elsewhere it would linger.
trap 'kill "$sleeper" 2>/dev/null; remove_ours_except " "; exit 0' TERM INT
echo "pointing containerd at $MIRROR_URL for: $(cut -d ' ' -f 2 "$SOURCE/registries" | tr '\n' ' ')"
while :; do
  write_all
  # In the background, so that the trap runs as soon as the signal arrives, not when sleep ends.
  sleep "$INTERVAL" &
  sleeper=$!
  wait "$sleeper"
done
