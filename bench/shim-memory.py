#!/usr/bin/env python3
"""Memory and idle wake-ups of podsup's helpers, per pod: the figures issue 4 asks for.

Starts `podsup daemon` on a temp directory, drops PODS manifests of CONTAINERS busybox
containers each (`sleep`, restartPolicy Always), waits for them to run, then prints for the
daemon, each shim and each shim's parked processes (the pre-forked next start of each
container, docs/restarts.md): VmRSS and PSS (/proc/PID/smaps_rollup), and the voluntary
context switches of all of them over IDLE seconds. Removes the pods, waits for the shims to
end, stops the daemon and removes its cgroup parent and temp directory.

Usage (root): bench/shim-memory.py [--podsup BIN] [--pods 5] [--containers 2] [--idle 60]
          [-- EXTRA DAEMON FLAGS, e.g. --no-prefork]
"""
import argparse, os, shutil, signal, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--podsup", default="target/release/podsup")
ap.add_argument("--pods", type=int, default=5)
ap.add_argument("--containers", type=int, default=2)
ap.add_argument("--idle", type=int, default=60)
ap.add_argument("extra", nargs="*")
args = ap.parse_args()
BIN = os.path.abspath(args.podsup)
PARENT = f"podsup-shimmem-{os.getpid()}"
MARK = str(3_600_000 + os.getpid() % 100_000)


def children(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        out += [int(x) for x in open(f"/proc/{pid}/task/{t}/children").read().split()]
    return out


def rollup(pid):
    r = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        f = line.split()
        if len(f) >= 2 and f[1].isdigit():
            r[f[0].rstrip(":")] = int(f[1])
    return r


def vcs(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("voluntary_ctxt_switches"):
            return int(line.split()[1])


def is_podsup(pid):
    return open(f"/proc/{pid}/cmdline", "rb").read().startswith(BIN.encode())


tmp = tempfile.mkdtemp(prefix="podsup-shimmem-")
os.chmod(tmp, 0o755)
d = {k: os.path.join(tmp, k) for k in ("root", "run", "logs", "manifests", "rootfs")}
for k in ("root", "run", "logs", "manifests"):
    os.makedirs(d[k], mode=0o755)
os.makedirs(d["rootfs"] + "/bin")
shutil.copy("/bin/busybox", d["rootfs"] + "/bin/busybox")
for a in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
    if a != "busybox":
        os.symlink("busybox", f"{d['rootfs']}/bin/{a}")
flags = ["--root", d["root"], "--run", d["run"], "--log-dir", d["logs"]]
subprocess.run([BIN, "image", "import", d["rootfs"], "busybox:shimmem", "--root", d["root"]],
               check=True, capture_output=True)
daemon = subprocess.Popen([BIN, "daemon", "--manifests", d["manifests"], "--cgroup-parent", PARENT]
                          + flags + args.extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    time.sleep(0.5)
    for i in range(args.pods):
        y = f"apiVersion: v1\nkind: Pod\nmetadata: {{name: m{i}}}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n"
        for c in range(args.containers):
            y += (f"  - name: c{c}\n    image: busybox:shimmem\n    imagePullPolicy: Never\n"
                  f"    command: [sh, -c, \"trap 'exit 0' TERM; sleep {MARK} & wait\"]\n")
        open(os.path.join(d["manifests"], f"m{i}.yaml"), "w").write(y)
    deadline = time.time() + 30
    while time.time() < deadline:
        shims = children(daemon.pid)
        parked = {s: [c for c in children(s) if is_podsup(c)] for s in shims}
        if len(shims) == args.pods and all(len(p) == args.containers for p in parked.values()):
            break
        time.sleep(0.2)
    time.sleep(1)
    shims = children(daemon.pid)
    parked = {s: [c for c in children(s) if is_podsup(c)] for s in shims}
    r = rollup(daemon.pid)
    print(f"{args.pods} pods x {args.containers} containers, daemon flags {args.extra or '-'}")
    print(f"daemon: VmRSS {r['Rss'] / 1024:.2f} MiB, PSS {r['Pss'] / 1024:.2f} MiB")
    for s in shims:
        r = rollup(s)
        pp = sum(rollup(c)["Pss"] for c in parked[s])
        print(f"shim {s}: VmRSS {r['Rss'] / 1024:.2f} MiB, PSS {r['Pss'] / 1024:.2f} MiB; "
              f"{len(parked[s])} parked: PSS {pp / 1024:.2f} MiB; together {(r['Pss'] + pp) / 1024:.2f} MiB")
    everyone = [daemon.pid] + shims + [c for v in parked.values() for c in v]
    if args.idle:
        before = {p: vcs(p) for p in everyone}
        time.sleep(args.idle)
        moved = {p: vcs(p) - before[p] for p in everyone}
        print(f"voluntary context switches over {args.idle} s: {sum(moved.values())} "
              f"(daemon + {len(shims)} shims + {len(everyone) - 1 - len(shims)} parked: {sorted(set(moved.values()))})")
finally:
    for f in os.listdir(d["manifests"]):
        os.unlink(os.path.join(d["manifests"], f))
    deadline = time.time() + 30
    while children(daemon.pid) and time.time() < deadline:
        time.sleep(0.2)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(30)
    for line in open("/proc/self/mountinfo"):
        if " - cgroup" in line:
            p = os.path.join(line.split()[4], PARENT)
            if os.path.isdir(p):
                try:
                    os.rmdir(p)
                except OSError as e:
                    print(f"left {p}: {e}", file=sys.stderr)
    shutil.rmtree(tmp)
