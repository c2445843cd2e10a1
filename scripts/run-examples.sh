#!/bin/sh
# Runs podsup's main job on the example pods: builds podsup, imports a busybox image made from
# Debian's busybox-static, and starts `podsup daemon` on a copy of pods/ with its own
# directories under /tmp/podsup-examples (nothing is written to /etc, /var or /run).
# Needs root (namespaces, mounts, cgroups). Ctrl-C stops the daemon; the pods keep running
# (as under systemd's KillMode=process) until you remove their manifests or run
#   rm /tmp/podsup-examples/manifests/*.yaml   (with the daemon running), or restart it.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "run-examples: needs root (namespaces, mounts, cgroups): run it as root" >&2
  exit 1
fi
if [ ! -x /bin/busybox ]; then
  apt-get update && apt-get install -y busybox-static
fi
cargo build --release
bin=$PWD/target/release/podsup
D=/tmp/podsup-examples
mkdir -p "$D"
chmod 0755 "$D"
# A root-owned copy of the examples: podsup refuses manifests in a directory others may write.
rm -rf "$D/manifests" && mkdir -m 0755 "$D/manifests" && cp pods/*.yaml "$D/manifests/"
if ! "$bin" image ls --root "$D/root" 2>/dev/null | grep -q 'busybox.*1.36'; then
  rm -rf "$D/rootfs" && mkdir -p "$D/rootfs/bin" "$D/rootfs/etc" "$D/rootfs/tmp"
  cp /bin/busybox "$D/rootfs/bin/"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$D/rootfs/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$D/rootfs/etc/passwd"
  printf 'root:x:0:\n' > "$D/rootfs/etc/group"
  "$bin" image import "$D/rootfs" docker.io/library/busybox:1.36 --root "$D/root"
fi
echo "podsup daemon on $D/manifests; in another terminal: $bin status --run $D/run"
exec "$bin" daemon --manifests "$D/manifests" --root "$D/root" --run "$D/run" --log-dir "$D/logs"
