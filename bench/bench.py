#!/usr/bin/env python3
"""podsup against `podman kube play`: same machine, same run, same manifests, same busybox root
filesystem; ratios podsup/podman. See docs/benchmark.md for what each row measures.

Usage: bench/bench.py [--podsup BIN] [--quick] [--runs N] [--out FILE] [--rows 1,2,...]

Needs root. Installs what it lacks from Debian packages (busybox-static; for the podman side
also podman, runc, conmon, catatonit, hyperfine) and runs podman with a containers.conf of its
own (CONTAINERS_CONF), so nothing global is changed. Everything it creates (temp dirs, pods,
cgroups, the podman image) is removed at the end; it only ever signals processes it started
(found by PID: the daemons it spawned, and container processes whose argv is unique to this run).
"""
import argparse, datetime, json, os, random, shutil, signal, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = f"{os.getpid() % 100000}{random.randrange(100, 999)}"
PARENT = f"podsup-bench-{TOKEN}"  # podsup's cgroup parent (and PARENT-b0 for a second daemon)
IMAGE = f"localhost/podsup-bench-{TOKEN}:busybox"
PREFIX = f"pb{TOKEN}"  # pod names
SLEEP_BASE = random.randrange(10**6, 9 * 10**6, 10**5)  # unique `sleep N` arguments
_next = [0]
PATH_ENV = "/usr/sbin:/usr/bin:/sbin:/bin"
PODMAN_CONF = """# written by podsup's bench/bench.py, used through CONTAINERS_CONF (see /work/shared/peers.md)
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""
NEEDS = {  # file → Debian package
    "/bin/busybox": "busybox-static",
    "podman": "podman",
    "runc": "runc",
    "conmon": "conmon",
    "catatonit": "catatonit",
    "hyperfine": "hyperfine",
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def mark():
    _next[0] += 1
    return str(SLEEP_BASE + _next[0])


# ---------------------------------------------------------------- processes and cgroups

def sleepers():
    """{arg: [pid]} of every `sleep ARG` process (busybox sleep, exec'd by a container)."""
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    c = f.read()
            except OSError:
                continue
            if c.startswith(b"sleep\0"):
                parts = c.split(b"\0")
                if len(parts) >= 2:
                    out.setdefault(parts[1].decode(errors="replace"), []).append(int(p))
    return out


def wait(cond, timeout=60.0, what="condition", interval=0.001):
    t0 = time.monotonic()
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not met after {timeout:.0f} s")
        time.sleep(interval)


def running(marks):
    """A condition: every mark has a process; returns {mark: pid}."""
    def f():
        s = sleepers()
        return {m: s[m][0] for m in marks} if all(m in s for m in marks) else None
    return f


def gone(marks):
    def f():
        s = sleepers()
        return not any(m in s for m in marks)
    return f


def hierarchies():
    """(mount point, is a v1 controller hierarchy) of every cgroup mount."""
    out = []
    for line in open("/proc/self/mountinfo"):
        pre, _, post = line.partition(" - ")
        fs = post.split()
        if fs and fs[0] in ("cgroup", "cgroup2"):
            opts = fs[2].split(",") if len(fs) > 2 else []
            named = any(o.startswith("name=") for o in opts)
            out.append((pre.split()[4], fs[0] == "cgroup" and not named))
    return out


def rmdir_tree(path):
    """rmdir an (empty of tasks) cgroup directory and its sub-groups, deepest first."""
    if not os.path.isdir(path):
        return []
    left = []
    for e in os.scandir(path):
        if e.is_dir(follow_symlinks=False):
            left += rmdir_tree(e.path)
    try:
        os.rmdir(path)
    except OSError as e:
        left.append(f"{path}: {e.strerror}")
    return left


def stat_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
    except (OSError, ValueError):
        return None


def status_field(pid, name):
    try:
        with open(f"/proc/{pid}/status") as f:
            for l in f:
                if l.startswith(name + ":"):
                    return int(l.split()[1])
    except OSError:
        pass
    return None


def memory(pids):
    """Sum of Rss and Pss (kB, from smaps_rollup) over pids."""
    rss = pss = 0
    for p in pids:
        try:
            for l in open(f"/proc/{p}/smaps_rollup"):
                if l.startswith("Rss:"):
                    rss += int(l.split()[1])
                elif l.startswith("Pss:"):
                    pss += int(l.split()[1])
        except OSError:
            pass
    return rss, pss


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return []


def ppid(pid):
    try:
        s = open(f"/proc/{pid}/stat").read()
        return int(s[s.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- manifests

def container(name, command):
    return (f"  - name: {name}\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n"
            f"    command: {json.dumps(command)}\n")


def sleeper(name, m):
    # sh handles SIGTERM, so stopping costs no grace period (both systems alike); `sleep M` is
    # the process the bench looks for and kills.
    return container(name, ["sh", "-c", f"trap 'exit 0' TERM; sleep {m} & wait"])


def pod(name, containers, policy="Always"):
    return ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\nspec:\n"
            f"  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 2\n  containers:\n"
            + "".join(containers))


# ---------------------------------------------------------------- the two systems

class Podsup:
    name, short = "podsup", "ps"

    def __init__(self, binary, tmp, parent, extra=()):
        self.bin, self.parent = binary, parent
        self.dirs = {d: os.path.join(tmp, d) for d in ("root", "run", "logs", "manifests", "stage")}
        for d in self.dirs.values():
            os.makedirs(d, mode=0o755, exist_ok=True)
        self.flags = ["--root", self.dirs["root"], "--run", self.dirs["run"], "--log-dir", self.dirs["logs"],
                      "--manifests", self.dirs["manifests"]]
        self.extra = list(extra)
        self.daemon = None

    def import_image(self, rootfs):
        subprocess.run([self.bin, "image", "import", rootfs, IMAGE, "--root", self.dirs["root"]],
                       check=True, capture_output=True)

    def start(self):
        self.logf = open(os.path.join(self.dirs["logs"], "..", f"daemon-{self.parent}.log"), "w")
        self.daemon = subprocess.Popen([self.bin, "daemon", "--cgroup-parent", self.parent] + self.flags + self.extra,
                                       stdout=self.logf, stderr=subprocess.STDOUT)
        wait(lambda: os.path.exists(os.path.join(self.dirs["run"], "podsup.sock")), 20, "daemon socket")

    def _file(self, key):
        return os.path.join(self.dirs["manifests"], key + ".yaml")

    def up(self, key, text):
        st = os.path.join(self.dirs["stage"], key + ".yaml")
        with open(st, "w") as f:
            f.write(text)
        os.rename(st, self._file(key))

    def up_many(self, items):
        for key, text in items:
            with open(os.path.join(self.dirs["stage"], key + ".yaml"), "w") as f:
                f.write(text)
        for key, _ in items:
            os.rename(os.path.join(self.dirs["stage"], key + ".yaml"), self._file(key))

    replace = up

    def down(self, key):
        os.unlink(self._file(key))

    def down_many(self, keys):
        for k in keys:
            os.unlink(self._file(k))

    def settle(self, key=None):
        pass

    def cgroups_gone(self, key=None):
        """No pod group left under our parent in any controller hierarchy."""
        def f():
            for mp, ctl in hierarchies():
                d = os.path.join(mp, self.parent)
                if ctl and os.path.isdir(d) and any(e.startswith("pod") for e in os.listdir(d)):
                    return False
            return True
        return f

    def helpers(self):
        shims = [int(p) for p in os.listdir("/proc") if p.isdigit() and ppid(int(p)) == self.daemon.pid
                 and cmdline(int(p))[1:2] == [b"shim"]]
        # Each restartable container's parked next process: a fork of its shim (same argv).
        parked = [int(p) for p in os.listdir("/proc") if p.isdigit() and ppid(int(p)) in shims
                  and cmdline(int(p))[1:2] == [b"shim"]]
        return [self.daemon.pid] + shims + parked

    def status(self):
        out = subprocess.run([self.bin, "status", "-o", "json"] + self.flags, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def starts(self, pod_name):
        for it in self.status()["items"]:
            if it["metadata"]["name"] == pod_name:
                return sum(c.get("restartCount", 0) + 1 for c in it["status"].get("containerStatuses", []))
        return None

    def stop(self):
        """Remove every manifest, wait for the shims to go, stop the daemon."""
        if not self.daemon:
            return
        for f in os.listdir(self.dirs["manifests"]):
            os.unlink(os.path.join(self.dirs["manifests"], f))
        try:
            wait(lambda: len(self.helpers()) == 1, 120, "shims gone", 0.05)
        except TimeoutError as e:
            log(f"podsup: {e}: {self.helpers()}")
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(30)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        self.daemon = None
        left = []
        for mp, _ in hierarchies():
            left += rmdir_tree(os.path.join(mp, self.parent))
        if left:
            log("podsup: cgroups left:", left)


class PodsupRun:
    """`podsup run FILE --backoff-initial 0`, for row 2 when the daemon has no such flag."""

    def __init__(self, binary, tmp, parent):
        self.bin, self.parent, self.tmp = binary, parent, tmp
        self.proc = None

    def up(self, sys_, key, text):
        f = os.path.join(self.tmp, key + ".yaml")
        with open(f, "w") as fh:
            fh.write(text)
        self.proc = subprocess.Popen([self.bin, "run", f, "--backoff-initial", "0", "--cgroup-parent", self.parent,
                                      "--root", sys_.dirs["root"], "--run", os.path.join(self.tmp, "run-b0"),
                                      "--log-dir", sys_.dirs["logs"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for mp, _ in hierarchies():
            rmdir_tree(os.path.join(mp, self.parent))


class Podman:
    name, short = "podman", "pm"

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "podman")
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "containers.conf")
        with open(conf, "w") as f:
            f.write(PODMAN_CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.procs = {}  # key → running `podman kube …`
        self.cgroups = {}  # pod name → cgroup path (relative to each hierarchy)
        self.pods = set()  # every pod name we played (for the final clean-up)
        self.had_libpod_parent = {mp for mp, _ in hierarchies() if os.path.isdir(os.path.join(mp, "libpod_parent"))}
        self.had_pod_groups = self.pod_groups()

    @staticmethod
    def pod_groups():
        """Every podman pod group (hierarchy/libpod_parent/ID) there is now."""
        out = set()
        for mp, _ in hierarchies():
            d = os.path.join(mp, "libpod_parent")
            if os.path.isdir(d):
                out |= {e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False)}
        return out

    def run(self, *args, check=True):
        r = subprocess.run(["podman"] + list(args), capture_output=True, text=True, env=self.env)
        if check and r.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {r.stderr.strip()}")
        return r

    def import_image(self, tar):
        self.run("import", "--change", f"ENV PATH={PATH_ENV}", tar, IMAGE)

    def _file(self, key):
        return os.path.join(self.dir, key + ".yaml")

    def _names(self, text):
        return [l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("  name: ")]

    def up(self, key, text, replace=False):
        with open(self._file(key), "w") as f:
            f.write(text)
        self.pods.update(self._names(text))
        self.procs[key] = subprocess.Popen(["podman", "kube", "play", "--network", "none"] + (["--replace"] if replace else [])
                                           + [self._file(key)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           env=self.env)

    def replace(self, key, text):
        self.up(key, text, replace=True)

    up_many_key = "many"

    def up_many(self, items):
        self.up(self.up_many_key, "---\n".join(t for _, t in items))

    def down(self, key):
        names = self._names(open(self._file(key)).read())
        self.procs[key] = subprocess.Popen(["podman", "kube", "down", self._file(key)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, env=self.env)
        self.downing = names

    def down_many(self, keys):
        self.down(self.up_many_key)

    def settle(self, key=None):
        """Wait for the `podman kube` command of key to end; remember the pods' cgroups."""
        for k in ([key] if key else list(self.procs)):
            p = self.procs.pop(k, None)
            if p:
                _, err = p.communicate(timeout=900)
                if p.returncode != 0:
                    raise RuntimeError(f"podman kube ({k}): {err.decode().strip()}")

    def note_cgroups(self, names):
        r = self.run("pod", "inspect", *names)
        data = json.loads(r.stdout)
        for d in (data if isinstance(data, list) else [data]):
            self.cgroups[d["Name"]] = d.get("CgroupPath", "")

    def cgroups_gone(self, key):
        names = self._names(open(self._file(key)).read())
        paths = [self.cgroups[n].strip("/") for n in names if self.cgroups.get(n)]

        def f():
            # Controller hierarchies only: podman never removes its pods' groups in the
            # name=systemd and cgroup2 ones (they are counted as leftovers in the raw file).
            return not any(os.path.isdir(os.path.join(mp, p)) for mp, ctl in hierarchies() if ctl for p in paths)
        return f

    def leftovers(self, names):
        return [os.path.join(mp, self.cgroups[n].strip("/")) for n in names if self.cgroups.get(n)
                for mp, _ in hierarchies() if os.path.isdir(os.path.join(mp, self.cgroups[n].strip("/")))]

    def helpers(self):
        """conmon of every container of our pods, and the infra containers' process (catatonit)."""
        r = self.run("ps", "-a", "--pod", "--format", "{{.ID}} {{.PodName}}")
        ids = [l.split()[0] for l in r.stdout.splitlines() if len(l.split()) > 1 and l.split()[1].startswith(PREFIX)]
        if not ids:
            return []
        pids = []
        for c in json.loads(self.run("inspect", *ids).stdout):
            st = c["State"]
            if st.get("ConmonPid"):
                pids.append(st["ConmonPid"])
            if c.get("IsInfra") and st.get("Pid"):
                pids.append(st["Pid"])
        return pids

    def starts(self, pod_name, containers):
        n = 0
        for c in containers:
            r = self.run("inspect", "--format", "{{.RestartCount}}", f"{pod_name}-{c}")
            n += int(r.stdout.strip()) + 1
        return n

    def clean(self):
        self.settle()
        ours = [n for n in self.pods]
        live = set(self.run("pod", "ps", "--format", "{{.Name}}", check=False).stdout.split())
        for n in ours:
            if n in live:
                if not self.cgroups.get(n):
                    try:
                        self.note_cgroups([n])
                    except Exception:
                        pass
                self.run("pod", "rm", "-f", n, check=False)
        self.run("rmi", "-f", IMAGE, check=False)
        left = []
        for n in ours:
            p = self.cgroups.get(n, "").strip("/")
            if p:
                for mp, _ in hierarchies():
                    left += rmdir_tree(os.path.join(mp, p))
        # Pods made and removed during the run leave groups (podman never removes them in the
        # name=systemd and cgroup2 hierarchies): remove the new ones no live pod owns.
        live_ids = set(self.run("pod", "ps", "--no-trunc", "--format", "{{.ID}}", check=False).stdout.split())
        for d in self.pod_groups() - self.had_pod_groups:
            if os.path.basename(d) not in live_ids:
                left += rmdir_tree(d)
        for mp, _ in hierarchies():
            d = os.path.join(mp, "libpod_parent")
            if mp not in self.had_libpod_parent and os.path.isdir(d):
                try:
                    os.rmdir(d)  # only when empty: another user's pods keep it
                except OSError:
                    pass
        if left:
            log("podman: cgroups left:", left)


# ---------------------------------------------------------------- setup

def ensure_packages(want_podman):
    missing = []
    for f, pkg in NEEDS.items():
        if not want_podman and pkg != "busybox-static":
            continue
        if not (os.path.exists(f) if f.startswith("/") else shutil.which(f)):
            missing.append(pkg)
    if not missing:
        return
    log("installing", " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + missing, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + missing, env=env, check=True)


def make_rootfs(tmp):
    rootfs = os.path.join(tmp, "rootfs")
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
        os.makedirs(os.path.join(rootfs, d), mode=0o755, exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    applets = subprocess.run(["/bin/busybox", "--list"], check=True, capture_output=True, text=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", os.path.join(rootfs, "bin", a))
    with open(os.path.join(rootfs, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    tar = os.path.join(tmp, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
    return rootfs, tar


def machine():
    def sh(c):
        r = subprocess.run(c, shell=True, capture_output=True, text=True)
        return r.stdout.strip()
    return {
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "nproc": sh("nproc"),
        "memory": sh("free -h | awk '/Mem:/{print $2}'"),
        "kernel": sh("uname -r"),
        "debian": sh("cat /etc/debian_version"),
        "podman": sh("podman --version"),
        "runc": sh("runc --version | head -1"),
        "conmon": sh("conmon --version | head -1"),
        "catatonit": sh("catatonit --version 2>&1 | head -1"),
        "loadavg": sh("cat /proc/loadavg"),
    }


# ---------------------------------------------------------------- the rows

class Bench:
    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.raw = {"rows": {}, "notes": []}
        self.sys = []

    def add(self, row, system, value):
        self.raw["rows"].setdefault(row, {}).setdefault(system, []).append(value)

    def timed(self, s, start, cond, what, settle_key=None):
        """Time from start() to cond() true; then let podman's command end (not timed)."""
        t0 = time.monotonic()
        start()
        v = wait(cond, 120, f"{s.name}: {what}")
        dt = time.monotonic() - t0
        s.settle(settle_key)
        return dt, v

    # rows 1, 2b, 4, 5: one 2-container pod per cycle, podsup and podman interleaved
    def lifecycle(self):
        n, warm = self.args.runs, 1
        for i in range(warm + n):
            for s in self.sys:
                name = f"{PREFIX}-c{i}-{s.short}"
                a, b, a2 = mark(), mark(), mark()
                key = f"cyc{i}"
                t1, pids = self.timed(s, lambda: s.up(key, pod(name, [sleeper("a", a), sleeper("b", b)])),
                                      running([a, b]), "dropped pod running", key)
                if isinstance(s, Podman):
                    s.note_cgroups([name])
                time.sleep(0.2)
                # kill -9 of b's process in a fresh pod: the first restart of the default curve
                os.kill(pids[b], signal.SIGKILL)
                old_b = pids[b]
                t2, nb = self.timed(s, lambda: None, lambda: (lambda p: p if p and p[b] != old_b else None)(running([b])()),
                                    "killed process back")
                time.sleep(0.2)
                b_pid = nb[b]
                t4, _ = self.timed(s, lambda: s.replace(key, pod(name, [sleeper("a", a2), sleeper("b", b)])),
                                   running([a2]), "edited container running", key)
                kept = running([b])() == {b: b_pid}
                if isinstance(s, Podman):
                    s.note_cgroups([name])
                time.sleep(0.2)
                t5, _ = self.timed(s, lambda: s.down(key),
                                   lambda: gone([a, a2, b])() and s.cgroups_gone(key)(), "removed pod gone", key)
                if isinstance(s, Podsup) and i == 0:
                    left = [os.path.join(mp, s.parent, e) for mp, _ in hierarchies() if os.path.isdir(os.path.join(mp, s.parent))
                            for e in os.listdir(os.path.join(mp, s.parent)) if e.startswith("pod")]
                    if left:
                        self.raw["notes"].append(f"podsup leaves after the file is removed: {left}")
                if isinstance(s, Podman):
                    left = s.leftovers([name])
                    if left and i == 0:
                        self.raw["notes"].append(f"podman leaves after kube down: {left}")
                    for p in left:
                        rmdir_tree(p)
                if i >= warm:
                    self.add("1", s.name, t1)
                    self.add("2b", s.name, t2)
                    self.add("4", s.name, t4)
                    self.add("4kept", s.name, kept)
                    self.add("5", s.name, t5)
                time.sleep(0.2)
            log(f"lifecycle {i + 1}/{warm + n}")

    # row 2: kill -9 → running, podsup without back-off
    def kill_restart(self):
        n, warm = self.args.runs, 1
        marks, b0 = {}, None
        for s in self.sys:
            m = mark()
            name = f"{PREFIX}-k-{s.short}"
            text = pod(name, [sleeper("c", m)])
            if isinstance(s, Podsup):
                if self.b0_daemon:
                    self.b0_daemon.up("k", text)
                else:
                    b0 = PodsupRun(self.args.podsup, self.tmp, PARENT + "-b0")
                    b0.up(s, "k", text)
            else:
                s.up("k", text)
                s.settle("k")
            marks[s.name] = m
        try:
            for s in self.sys:
                wait(running([marks[s.name]]), 60, f"{s.name}: kill pod running")
            for i in range(warm + n):
                for s in self.sys:
                    m = marks[s.name]
                    old = running([m])()[m]
                    os.kill(old, signal.SIGKILL)
                    t, _ = self.timed(s, lambda: None, lambda: (lambda p: p if p and p[m] != old else None)(running([m])()),
                                      "killed process back")
                    if i >= warm:
                        self.add("2", s.name, t)
                    time.sleep(0.3)
        finally:
            for s in self.sys:
                if isinstance(s, Podsup):
                    if self.b0_daemon:
                        self.b0_daemon.down("k")
                        wait(gone([marks[s.name]]), 60, "podsup kill pod gone")
                    elif b0:
                        b0.stop()
                else:
                    s.down("k")
                    s.settle("k")

    # row 3: crash loop for N seconds, both systems at once
    def crash_loop(self):
        secs = self.args.crash_seconds
        names = {}
        for s in self.sys:
            names[s.name] = f"{PREFIX}-crash-{s.short}"
            s.up("crash", pod(names[s.name], [container("c", ["sh", "-c", "exit 1"])]))
        t0 = time.monotonic()
        for s in self.sys:
            s.settle("crash")
        time.sleep(max(0.0, secs - (time.monotonic() - t0)))
        for s in self.sys:
            n = s.starts(names[s.name]) if isinstance(s, Podsup) else s.starts(names[s.name], ["c"])
            self.add("3", s.name, n)
        for s in self.sys:
            s.down("crash")
            s.settle("crash")
            if isinstance(s, Podsup):
                wait(s.cgroups_gone(), 60, "crash pod gone", 0.05)

    # rows 6, 7, 8
    def scale(self):
        sizes = self.args.sizes
        for size in sizes:
            two = size == 1
            states = {}
            for s in self.sys:
                items, marks = [], []
                for j in range(size):
                    if two:
                        ms = [mark(), mark()]
                        cs = [sleeper("a", ms[0]), sleeper("b", ms[1])]
                    else:
                        ms = [mark()]
                        cs = [sleeper("c", ms[0])]
                    items.append((f"s{size}-{j}", pod(f"{PREFIX}-s{size}-{j}-{s.short}", cs)))
                    marks += ms
                states[s.name] = (items, marks)
                t_up, _ = self._timed_many(s, lambda: s.up_many(items), running(marks), f"{size} pods running")
                if size == sizes[-1]:
                    self.add("8up", s.name, t_up)
                if isinstance(s, Podman):
                    s.note_cgroups([f"{PREFIX}-s{size}-{j}-pm" for j in range(size)])
            time.sleep(1.0)  # let start-up work settle before measuring
            for s in self.sys:
                h = s.helpers()
                rss, pss = memory(h)
                self.add(f"6-{size}", s.name, {"helpers": len(h), "rss_kb": rss, "pss_kb": pss, "pss_per_pod_kb": pss / size})
            if size == sizes[-1]:
                self.idle()
            for s in self.sys:
                items, marks = states[s.name]
                keys = [k for k, _ in items]
                cond = (lambda s=s, marks=marks: gone(marks)() and s.cgroups_gone(s.up_many_key)()) if isinstance(s, Podman) \
                    else (lambda s=s, marks=marks: gone(marks)() and s.cgroups_gone()())
                t_down, _ = self._timed_many(s, lambda: s.down_many(keys), cond, f"{size} pods stopped")
                if size == sizes[-1]:
                    self.add("8down", s.name, t_down)
                if isinstance(s, Podman):
                    for p in s.leftovers([f"{PREFIX}-s{size}-{j}-pm" for j in range(size)]):
                        rmdir_tree(p)
            log(f"scale {size} done")

    def _timed_many(self, s, start, cond, what):
        t0 = time.monotonic()
        start()
        wait(cond, 900, f"{s.name}: {what}", 0.01)
        dt = time.monotonic() - t0
        s.settle()
        return dt, None

    def idle(self):
        secs = self.args.idle_seconds
        before = {}
        for s in self.sys:
            h = s.helpers()
            before[s.name] = {p: (stat_ticks(p), status_field(p, "voluntary_ctxt_switches"),
                                  status_field(p, "nonvoluntary_ctxt_switches")) for p in h}
        time.sleep(secs)
        for s in self.sys:
            ticks = vol = nonvol = 0
            for p, (t, v, nv) in before[s.name].items():
                t2, v2, nv2 = stat_ticks(p), status_field(p, "voluntary_ctxt_switches"), status_field(p, "nonvoluntary_ctxt_switches")
                if None in (t, t2, v, v2):
                    continue
                ticks += t2 - t
                vol += v2 - v
                nonvol += (nv2 or 0) - (nv or 0)
            self.add("7", s.name, {"seconds": secs, "helpers": len(before[s.name]), "ticks": ticks,
                                   "voluntary_ctxt_switches": vol, "nonvoluntary_ctxt_switches": nonvol})


# ---------------------------------------------------------------- table

def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def table(raw, systems):
    R = raw["rows"]
    lines = []

    def row(label, key, fmt, scale=1.0, extra=None):
        cells = []
        meds = []
        for s in ("podsup", "podman"):
            xs = R.get(key, {}).get(s)
            if s not in systems or not xs:
                cells.append("—")
                meds.append(None)
                continue
            st = stats([x * scale for x in xs])
            meds.append(st["median"])
            cells.append(fmt(st))
        ratio = f"{meds[0] / meds[1]:.3f}" if None not in meds and meds[1] else ("0 / 0" if meds == [0, 0] else "—")
        lines.append((label, cells[0], cells[1], ratio + (f" {extra}" if extra else "")))

    ms = lambda st: f"{st['median']:.1f} ms ({st['min']:.1f}–{st['max']:.1f}, n={st['n']})"
    sec = lambda st: f"{st['median']:.2f} s"
    count = lambda st: f"{st['median']:.0f}"
    row("1 manifest dropped → running (2 containers)", "1", ms, 1000)
    row("2 kill -9 → running (podsup back-off 0)", "2", ms, 1000)
    row("2b kill -9 → running (default curve, 1st kill)", "2b", ms, 1000)
    row(f"3 crash loop {raw['config']['crash_seconds']:.0f} s: starts", "3", count)
    kept = {s: all(R.get("4kept", {}).get(s, [False])) for s in systems}
    row("4 edit one container → running", "4", ms, 1000,
        extra="(other kept PID: " + ", ".join(f"{s} {'yes' if kept[s] else 'no'}" for s in systems) + ")")
    row("5 manifest removed → gone + cgroups removed", "5", ms, 1000)
    for size in raw["config"]["sizes"]:
        lab = "1 pod × 2 containers" if size == 1 else f"{size} pods"
        for what, k in (("RSS", "rss_kb"), ("PSS", "pss_kb"), ("PSS/pod", "pss_per_pod_kb")):
            key = f"6-{size}-{k}"
            R[key] = {s: [v[k] / 1024 for v in R.get(f"6-{size}", {}).get(s, [])] for s in systems}
            row(f"6 helpers {what}, {lab}", key, lambda st: f"{st['median']:.2f} MiB")
    secs = raw["config"]["idle_seconds"]
    for what, k in (("CPU ticks", "ticks"), ("voluntary ctx switches", "voluntary_ctxt_switches")):
        key = f"7-{k}"
        R[key] = {s: [v[k] for v in R.get("7", {}).get(s, [])] for s in systems}
        row(f"7 idle {secs:.0f} s, {raw['config']['sizes'][-1]} pods: {what}", key, count)
    n = raw["config"]["sizes"][-1]
    row(f"8 {n} pods dropped at once → all running", "8up", sec)
    row(f"8 {n} pods removed → all stopped", "8down", sec)
    w = [max(len(l[i]) for l in lines + [("row", "podsup", "podman", "ratio")]) for i in range(4)]
    out = [f"| {'row':{w[0]}} | {'podsup':{w[1]}} | {'podman':{w[2]}} | {'podsup/podman':{w[3]}} |",
           f"| {'-' * w[0]} | {'-' * w[1]} | {'-' * w[2]} | {'-' * w[3]} |"]
    out += [f"| {a:{w[0]}} | {b:{w[1]}} | {c:{w[2]}} | {d:{w[3]}} |" for a, b, c, d in lines]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--podsup", default=os.path.join(HERE, "..", "target", "release", "podsup"),
                    help="the podsup binary (default: target/release/podsup)")
    ap.add_argument("--quick", action="store_true",
                    help="podsup only, 3 runs, short crash loop and idle windows, 10 pods at most (< 2 min)")
    ap.add_argument("--runs", type=int, help="samples per timed row, after one warm-up (default 10; quick 3)")
    ap.add_argument("--rows", default="1,2,3,4,5,6,7,8", help="rows to run (1, 2b, 4, 5 run together)")
    ap.add_argument("--out", help="raw samples, JSON (default bench/results/raw-<date>.json)")
    ap.add_argument("--sizes", help="pod counts of rows 6-8, comma-separated (default 1,20,100; quick 1,5,10)")
    ap.add_argument("--crash-seconds", type=float, help="row 3 window (default 30; quick 5)")
    ap.add_argument("--idle-seconds", type=float, help="row 7 window (default 60; quick 5)")
    ap.add_argument("--cgroup-parent", help="podsup's cgroup parent (default podsup-bench-<random>)")
    ap.add_argument("--tmpdir", help="where to make the bench's temporary directory (default: $TMPDIR or /tmp)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing packages")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.py needs root (cgroups, namespaces, podman rootful)")
    args.podsup = os.path.abspath(args.podsup)
    if not os.access(args.podsup, os.X_OK):
        sys.exit(f"{args.podsup}: no such binary (cargo build --release, or --podsup BIN)")
    args.runs = args.runs or (3 if args.quick else 10)
    args.crash_seconds = args.crash_seconds or (5.0 if args.quick else 30.0)
    args.idle_seconds = args.idle_seconds or (5.0 if args.quick else 60.0)
    args.sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else ([1, 5, 10] if args.quick else [1, 20, 100])
    rows = set(args.rows.split(","))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    args.out = args.out or os.path.join(HERE, "results", f"raw-{'quick-' if args.quick else ''}{stamp}.json")
    if not args.no_install:
        ensure_packages(not args.quick)
    global PARENT
    PARENT = args.cgroup_parent or PARENT
    with tempfile.TemporaryDirectory(prefix="podsup-bench-", dir=args.tmpdir) as tmp:
        os.chmod(tmp, 0o755)
        b = Bench(args, tmp)
        rootfs, tar = make_rootfs(tmp)
        ps = Podsup(args.podsup, os.path.join(tmp, "podsup"), PARENT)
        ps.import_image(rootfs)
        b.sys = [ps]
        b.b0_daemon = None
        pm = None
        try:
            ps.start()
            help_ = subprocess.run([args.podsup, "daemon", "--help"], capture_output=True, text=True).stdout
            if "--backoff-initial" in help_:
                b.b0_daemon = Podsup(args.podsup, os.path.join(tmp, "podsup-b0"), PARENT + "-b0",
                                     ["--backoff-initial", "0"])
                b.b0_daemon.dirs["root"] = ps.dirs["root"]
                b.b0_daemon.flags[1] = ps.dirs["root"]
                b.b0_daemon.start()
            b.raw["notes"].append("row 2 podsup: " + ("a second daemon with --backoff-initial 0" if b.b0_daemon
                                                       else "`podsup run --backoff-initial 0` (the daemon has no such flag)"))
            if not args.quick:
                pm = Podman(tmp)
                pm.import_image(tar)
                b.sys.append(pm)
                # warm-up: podman builds its pause image on the first pod
                pm.up("warm", pod(f"{PREFIX}-warm", [sleeper("c", mark())]))
                pm.settle("warm")
                pm.note_cgroups([f"{PREFIX}-warm"])
                pm.down("warm")
                pm.settle("warm")
            b.raw["machine"] = machine()
            b.raw["config"] = {"runs": args.runs, "quick": args.quick, "crash_seconds": args.crash_seconds,
                               "idle_seconds": args.idle_seconds, "sizes": args.sizes, "podsup": args.podsup,
                               "date": stamp, "commit": subprocess.run(["git", "-C", HERE, "describe", "--always", "--dirty"],
                                                                      capture_output=True, text=True).stdout.strip()}
            t0 = time.monotonic()
            if rows & {"1", "2b", "4", "5"}:
                b.lifecycle()
            if "2" in rows:
                b.kill_restart()
                log("row 2 done")
            if "3" in rows:
                b.crash_loop()
                log("row 3 done")
            if rows & {"6", "7", "8"}:
                b.scale()
            b.raw["seconds"] = time.monotonic() - t0
        finally:
            if b.b0_daemon:
                b.b0_daemon.stop()
            ps.stop()
            if pm:
                pm.clean()
    systems = [s.name for s in b.sys]
    tab = table(b.raw, systems)
    b.raw["table"] = tab
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(b.raw, f, indent=1)
    print(tab)
    print(f"\nraw samples: {args.out}")


if __name__ == "__main__":
    main()
