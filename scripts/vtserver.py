"""The real `vectune serve` on a fresh local-disk store, for the scale scripts (stdlib only).

Server(env): started on a free loopback port; call() one JSON or streamed binary request;
wait() until a GET answers as wanted; memory() the process's RSS and peak RSS (MiB);
stop() with SIGTERM; restart() on the same store; close() removes the store.
With VTSERVER_LOG=FILE in the environment the server's log (stdout and stderr) is appended to FILE
(set RUST_LOG too for more than the defaults), to read a run's phases afterwards.
"""
import http.client, json, os, signal, socket, struct, subprocess, tempfile, time

BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "vectune")


class Server:
    def __init__(self, env=None, binary=BINARY, store=None, cpus=None):
        """`store`: another server's store (several instances on one store); `cpus`: the
        cores to pin the process to (`taskset -c`)."""
        self.binary, self.env = binary, dict(os.environ, **(env or {}))
        self.shared = store is not None
        self.store = store or tempfile.mkdtemp(prefix="vectune-scale-")
        self.cpus = cpus
        self.start()

    def start(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.t0 = time.perf_counter()
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        log = self.env.get("VTSERVER_LOG")
        err = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(pin + [self.binary, "serve", "--bind", f"127.0.0.1:{self.port}", "--store", self.store],
                                     env=self.env, stdout=err, stderr=err)
        if log:
            err.close()
        self.wait("/health")

    def call(self, method, path, body=None, raw=None, length=None, check=True):
        """One request: `body` as JSON, or `raw` (bytes or a file object, streamed) with its
        `length`; the status and the JSON answer (a status >= 400 ends the script when `check`)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=7200)
        headers = {"Content-Type": "application/octet-stream" if raw is not None else "application/json"}
        if raw is not None and length is not None:
            headers["Content-Length"] = str(length)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        out = (r.status, json.loads(r.read() or b"null"))
        c.close()
        if check and out[0] >= 400:
            raise SystemExit(f"{method} {path}: {out}")
        return out

    def wait(self, path, ok=lambda status, body: status == 200):
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"vectune serve exited with {self.proc.returncode} (settings refused?)")
            try:
                st, b = self.call("GET", path, check=False)
                if ok(st, b):
                    return b
            except OSError:
                pass
            time.sleep(0.01)

    def memory(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            vals = {k: int(v.split()[0]) / 1024 for k, _, v in (l.partition(":") for l in f) if k in ("VmRSS", "VmHWM")}
        return {"rss_mib": vals["VmRSS"], "peak_mib": vals["VmHWM"]}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)

    def close(self):
        if self.proc.poll() is None:
            self.stop()
        if not self.shared:
            subprocess.run(["rm", "-rf", self.store])


def upload_env(size):
    """Limits that admit one body of `size` bytes and keep long uploads and runs open."""
    return {"VECTUNE_MAX_BINARY_BODY_BYTES": str(max(size + 1024, 1 << 30)),
            "VECTUNE_MAX_INGEST_BYTES_IN_FLIGHT": str(max(size + 1024, 2 << 30)),
            "VECTUNE_REQUEST_TIMEOUT_SECS": "3600"}


def read_fvecs(path, limit):
    """The first `limit` rows of an fvecs file, as lists of floats."""
    rows = []
    with open(path, "rb") as f:
        while len(rows) < limit:
            head = f.read(4)
            if not head:
                break
            d = struct.unpack("<i", head)[0]
            rows.append(list(struct.unpack(f"<{d}f", f.read(4 * d))))
    return rows
