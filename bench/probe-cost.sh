#!/bin/sh
# The CPU cost of one probe: a pod whose only activity is one probe every second (MODE exec:
# `exec: [true]`; tcp: a tcpSocket probe on busybox httpd; idle: no probe), run by
# `podsup run` for N seconds. Samples the shim's own CPU time (/proc/PID/schedstat, ns), its
# reaped children's (the probe processes: cutime+cstime of /proc/PID/stat, clock ticks) and
# its voluntary context switches. Needs root and busybox-static; everything lives under
# /tmp/podsup-probe-cost and the cgroup parent podsup-probe-cost.
#   bench/probe-cost.sh target/release/podsup exec 60
set -eu
BIN=$(realpath "$1"); MODE=${2:-exec}; N=${3:-60}
D=/tmp/podsup-probe-cost; rm -rf $D; mkdir -p $D/rootfs/bin $D/rootfs/etc $D/rootfs/tmp $D/m
cp /bin/busybox $D/rootfs/bin/
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox $D/rootfs/bin/$a; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > $D/rootfs/etc/passwd; printf 'root:x:0:\n' > $D/rootfs/etc/group
"$BIN" image import $D/rootfs bb:1 --root $D/root >/dev/null
case $MODE in
  exec) CMD='["sleep", "100000"]'; PROBE='    livenessProbe: {exec: {command: ["true"]}, periodSeconds: 1}' ;;
  tcp) CMD='["httpd", "-f", "-p", "8080"]'; PROBE='    livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}' ;;
  idle) CMD='["sleep", "100000"]'; PROBE='' ;;
  *) echo "MODE: exec, tcp or idle" >&2; exit 2 ;;
esac
cat > $D/m/pod.yaml <<YAML
apiVersion: v1
kind: Pod
metadata: {name: cost}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: bb:1
    command: $CMD
$PROBE
YAML
"$BIN" run $D/m/pod.yaml --root $D/root --run $D/run --cgroup-parent podsup-probe-cost >$D/out 2>&1 &
RUN=$!
sleep 3
SHIM=$(cat $D/run/pods/*/shim.pid)
TCK=$(getconf CLK_TCK)
sample() {
  awk '{print $1}' /proc/$SHIM/schedstat
  awk '{ s=$0; sub(/^.*\) /, "", s); split(s, f, " "); print f[14]+f[15] }' /proc/$SHIM/stat
  awk '/^voluntary_ctxt/{print $2}' /proc/$SHIM/status
}
set -- $(sample); S0=$1; C0=$2; V0=$3
sleep "$N"
set -- $(sample); S1=$1; C1=$2; V1=$3
kill -INT $RUN; wait $RUN || true
echo "$MODE: $N s, one probe a second"
echo "  shim CPU: $(( (S1-S0)/1000/N )) us per second"
echo "  probe processes CPU: $(( (C1-C0)*1000000/TCK/N )) us per second (resolution 1/$TCK s over the run)"
echo "  shim voluntary context switches: $(( (V1-V0) )) in $N s"
echo "  failed probes: $(grep -c Unhealthy $D/out || true)"
rm -rf $D
# The (now empty) cgroup parent of this run, in every hierarchy it was made in.
for h in /sys/fs/cgroup/podsup-probe-cost /sys/fs/cgroup/*/podsup-probe-cost; do
  [ -d "$h" ] && rmdir "$h" 2>/dev/null || true
done
