#!/bin/sh
# `podsup exec POD -- true` against `podman exec CTR true`, same machine, same run, same
# busybox root filesystem, measured by hyperfine (no shell in between: -N).
#
# Needs root, hyperfine, busybox-static and podman set up as /work/shared/peers.md says
# (runc, cgroupfs). Everything it makes is its own and removed at the end: a temp dir, a
# podsup daemon with its own cgroup parent, one podman image and container (and the empty
# libpod_parent groups podman leaves for it).
# Usage: bench/exec-latency.sh PODSUP_BIN [RUNS]
set -eu
BIN=$(realpath "$1")
RUNS=${2:-200}
D=$(mktemp -d /tmp/podsup-exec-bench.XXXXXX)
PARENT=podsup-bench-exec-$$
IMG=localhost/podsup-exec-bench-$$:latest
CTR=podsup-exec-bench-$$
DAEMON=
CID=

cleanup() {
    set +e
    if [ -n "$CID" ]; then
        podman rm -f "$CTR" >/dev/null 2>&1
    fi
    podman rmi "$IMG" >/dev/null 2>&1
    rm -f "$D/manifests/bench.yaml"
    if [ -n "$DAEMON" ]; then
        # The daemon stops the pod once its file is gone; then stop the daemon.
        for _ in $(seq 100); do
            "$BIN" status --run "$D/run" 2>/dev/null | grep -q bench || break
            sleep 0.1
        done
        kill -TERM "$DAEMON"
        wait "$DAEMON" 2>/dev/null
    fi
    for m in /sys/fs/cgroup/*; do
        [ -d "$m/$PARENT" ] && rmdir "$m/$PARENT" 2>/dev/null
        if [ -n "$CID" ] && [ -d "$m/libpod_parent" ]; then
            for g in "$m/libpod_parent/"*"$CID"* "$m/libpod_parent/conmon"; do
                # rmdir refuses a group that still has processes (another user's podman).
                [ -d "$g" ] && rmdir "$g" 2>/dev/null
            done
            rmdir "$m/libpod_parent" 2>/dev/null
        fi
    done
    rm -rf "$D"
}
trap cleanup EXIT INT TERM

# A busybox root filesystem (static busybox, an applet link each).
R=$D/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/root"
cp /bin/busybox "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
chmod 755 "$R" "$R/bin" "$R/etc" "$R/root"

mkdir -p "$D/root" "$D/run" "$D/manifests" "$D/logs"
"$BIN" image import "$R" bench-busybox:1 --root "$D/root" >/dev/null
cat >"$D/manifests/bench.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: bench
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: bench-busybox:1
    command: ["sleep", "3603"]
EOF
"$BIN" daemon --root "$D/root" --run "$D/run" --manifests "$D/manifests" \
    --log-dir "$D/logs" --cgroup-parent "$PARENT" >"$D/daemon.log" 2>&1 &
DAEMON=$!
ok=
for _ in $(seq 200); do
    if "$BIN" exec --run "$D/run" bench -- true 2>/dev/null; then ok=1; break; fi
    sleep 0.05
done
[ -n "$ok" ] || { echo "the pod did not come up:" >&2; cat "$D/daemon.log" >&2; exit 1; }

tar -C "$R" -cf "$D/rootfs.tar" .
podman import --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' "$D/rootfs.tar" "$IMG" >/dev/null
CID=$(podman run -d --name "$CTR" --network none --runtime runc "$IMG" sleep 3604)
CID=$(printf %s "$CID" | cut -c1-64)

hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$D/times.json" \
    -n "podsup exec" "$BIN exec --run $D/run bench -- true" \
    -n "podman exec" "podman exec $CTR true"
python3 - "$D/times.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command']}: median {r['median']*1000:.1f} ms, min {r['min']*1000:.1f} ms, "
          f"max {r['max']*1000:.1f} ms, n={len(r['times'])}")
EOF
