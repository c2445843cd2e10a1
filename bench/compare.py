#!/usr/bin/env python3
"""podsup vs podman, same machine, same run, same busybox image (a first cut of issue 7's bench).

Rows: kill -9 -> new process running; manifest dropped -> running; one container edited ->
its new process running (and whether the other kept its PID); manifest removed -> all gone.
A container "runs" when a process with a unique argv (`sleep 36xx`) is in /proc, polled every
millisecond. Needs root, busybox-static and podman (runc, cgroupfs; see shared peers.md). The
busybox image is built here and imported into both stores as docker.io/library/busybox:1.36.
Usage: bench/compare.py PODSUP_BIN [N]
"""
import os, signal, statistics, subprocess, sys, tempfile, time

PODSUP = os.path.abspath(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 7
PARENT = "podsup-bench"


def pids_of(arg):
    want = b"sleep\0" + arg.encode() + b"\0"
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if f.read() == want:
                        out.append(int(p))
            except OSError:
                pass
    return out


def wait(cond, timeout=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.001)
    raise TimeoutError("condition not met")


def pod(name, containers, policy="Always"):
    y = f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 2\n  containers:\n"
    for cname, arg in containers:
        # PID 1 handles SIGTERM, so stopping is not the grace period (both systems alike).
        y += f"  - name: {cname}\n    image: docker.io/library/busybox:1.36\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, \"trap 'exit 0' TERM; sleep {arg} & wait\"]\n"
    return y


def med(xs):
    return f"{statistics.median(xs)*1000:.1f} ms (min {min(xs)*1000:.1f}, max {max(xs)*1000:.1f}, n={len(xs)})"


results = {}


def kill_restart(arg, n):
    ts = []
    for _ in range(n):
        old = wait(lambda: pids_of(arg))[0]
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        wait(lambda: [p for p in pids_of(arg) if p != old])
        ts.append(time.monotonic() - t0)
        time.sleep(0.3)
    return ts


def make_rootfs(tmp):
    """A busybox root filesystem (Debian's busybox-static), and a tar of it for podman."""
    rootfs = os.path.join(tmp, "rootfs")
    for d in ("bin", "etc", "tmp"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    subprocess.run(["cp", "/bin/busybox", os.path.join(rootfs, "bin")], check=True)
    applets = subprocess.run(["/bin/busybox", "--list"], check=True, capture_output=True, text=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", os.path.join(rootfs, "bin", a))
    open(os.path.join(rootfs, "etc/passwd"), "w").write("root:x:0:0:root:/root:/bin/sh\n")
    tar = os.path.join(tmp, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
    subprocess.run(["podman", "import", "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", tar, "docker.io/library/busybox:1.36"], check=True, capture_output=True)
    return rootfs


def bench_podsup(tmp):
    root, run, logs, man = (os.path.join(tmp, d) for d in ("root", "run", "logs", "manifests"))
    for d in (root, run, logs, man):
        os.makedirs(d, mode=0o755, exist_ok=True)
    flags = ["--root", root, "--run", run, "--log-dir", logs]
    subprocess.run([PODSUP, "image", "import", make_rootfs(tmp), "docker.io/library/busybox:1.36", "--root", root], check=True, capture_output=True)
    # Row: kill -9 -> restart, with `podsup run` and back-off initial 0.
    f = os.path.join(tmp, "k.yaml")
    open(f, "w").write(pod("bk", [("c", "3601")]))
    p = subprocess.Popen([PODSUP, "run", f, "--backoff-initial", "0", "--cgroup-parent", PARENT] + flags, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results["kill -9 -> running (podsup: back-off initial 0)"] = [kill_restart("3601", N)]
    p.send_signal(signal.SIGINT)
    p.wait(30)
    # The daemon rows.
    d = subprocess.Popen([PODSUP, "daemon", "--manifests", man, "--cgroup-parent", PARENT] + flags, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    drop, rm, edit, kept = [], [], [], []
    for i in range(N):
        staged = os.path.join(tmp, "staged.yaml")
        open(staged, "w").write(pod("bd", [("a", "3602"), ("b", "3603")]))
        t0 = time.monotonic()
        os.rename(staged, os.path.join(man, "bd.yaml"))
        wait(lambda: pids_of("3602") and pids_of("3603"))
        drop.append(time.monotonic() - t0)
        b_pid = pids_of("3603")[0]
        time.sleep(0.3)
        open(staged, "w").write(pod("bd", [("a", "3604"), ("b", "3603")]))
        t0 = time.monotonic()
        os.rename(staged, os.path.join(man, "bd.yaml"))
        wait(lambda: pids_of("3604"))
        edit.append(time.monotonic() - t0)
        kept.append(pids_of("3603") == [b_pid])
        time.sleep(0.3)
        t0 = time.monotonic()
        os.unlink(os.path.join(man, "bd.yaml"))
        cg = "/sys/fs/cgroup/memory/" + PARENT
        wait(lambda: not pids_of("3604") and not pids_of("3603") and not any(e.startswith("pod") for e in (os.listdir(cg) if os.path.isdir(cg) else [])))
        rm.append(time.monotonic() - t0)
        time.sleep(0.3)
    d.send_signal(signal.SIGTERM)
    d.wait(30)
    results["manifest dropped -> running"] = [drop]
    results["edit one container -> its new process"] = [edit, all(kept)]
    results["manifest removed -> all gone"] = [rm]


def bench_podman(tmp):
    f = os.path.join(tmp, "pk.yaml")
    open(f, "w").write(pod("pk", [("c", "3611")]))
    subprocess.run(["podman", "kube", "play", "--network", "none", f], check=True, capture_output=True)
    results["kill -9 -> running (podsup: back-off initial 0)"].append(kill_restart("3611", N))
    subprocess.run(["podman", "kube", "down", f], capture_output=True)
    drop, rm, edit, kept = [], [], [], []
    for i in range(N):
        f = os.path.join(tmp, "pd.yaml")
        open(f, "w").write(pod("pd", [("a", "3612"), ("b", "3613")]))
        t0 = time.monotonic()
        subprocess.run(["podman", "kube", "play", "--network", "none", f], check=True, capture_output=True)
        wait(lambda: pids_of("3612") and pids_of("3613"))
        drop.append(time.monotonic() - t0)
        b_pid = pids_of("3613")[0]
        open(f, "w").write(pod("pd", [("a", "3614"), ("b", "3613")]))
        t0 = time.monotonic()
        subprocess.run(["podman", "kube", "play", "--replace", "--network", "none", f], check=True, capture_output=True)
        wait(lambda: pids_of("3614"))
        edit.append(time.monotonic() - t0)
        kept.append(pids_of("3613") == [b_pid])
        t0 = time.monotonic()
        subprocess.run(["podman", "kube", "down", f], check=True, capture_output=True)
        wait(lambda: not pids_of("3614") and not pids_of("3613"))
        rm.append(time.monotonic() - t0)
    results["manifest dropped -> running"].append(drop)
    results["edit one container -> its new process"] += [edit, all(kept)]
    results["manifest removed -> all gone"].append(rm)


def remove_parent():
    """Our bench cgroup parent, in every hierarchy (empty by now: rmdir refuses otherwise)."""
    for line in open("/proc/self/mountinfo"):
        if " - cgroup" in line:
            d = os.path.join(line.split()[4], PARENT)
            if os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError as e:
                    print(f"left {d}: {e}", file=sys.stderr)


with tempfile.TemporaryDirectory(prefix="podsup-bench-") as tmp:
    os.chmod(tmp, 0o755)
    try:
        bench_podsup(tmp)
    finally:
        remove_parent()
    bench_podman(tmp)
print(f"{'row':48} {'podsup':36} {'podman':36} ratio")
for row, v in results.items():
    ps, pm = v[0], (v[2] if row.startswith("edit") else v[1])
    extra = f"  (other container kept its PID: podsup {v[1]}, podman {v[3]})" if row.startswith("edit") else ""
    print(f"{row:48} {med(ps):36} {med(pm):36} {statistics.median(ps)/statistics.median(pm):.3f}{extra}")
