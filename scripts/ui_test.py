#!/usr/bin/env python3
"""The dashboard in a real browser: Playwright (PyPI) driving Debian's Chromium against the
release binary, seeded over HTTP with an index, a harness and an autotune.

Checks: no console errors and no request to another host; the Pareto plot draws every trial
of the harness (data-points) and GET pareto's frontier (data-frontier); promote from a table
row changes GET promoted; rollback restores the previous current; a running async autotune's
progress bar reaches done == total; with auth on, the page asks for a token, works after it
is entered (kept in sessionStorage "vectune_token"), and a read-only token shows no write
buttons. It measures how long the index page takes to render 5,000 trials, and saves
screenshots (outside the repo) so a person can look at them.

Usage: scripts/ui_test.py --bin target/release/vectune --python-playwright (run by .ci/run
in its own venv) [--shots DIR]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright

PASSED, FAILED = [], []
ADMIN, READ = "ui-admin-token-0123456789", "ui-read-token-0123456789"


def check(ok, what, detail=""):
    (PASSED if ok else FAILED).append(what)
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  -- {detail}"), flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, binary, store, env=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        e = dict(os.environ, RUST_LOG="warn", **(env or {}))
        self.proc = subprocess.Popen([binary, "serve", "--bind", f"127.0.0.1:{self.port}", "--store", store],
                                     env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.token = (env or {}).get("VECTUNE_API_TOKEN")
        for _ in range(300):
            try:
                urllib.request.urlopen(self.base + "/ready", timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit("server did not become ready")

    def call(self, method, path, body=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, (json.loads(text) if text else None)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def vectors(n, dims, seed=7):
    import random
    r = random.Random(seed)
    return [[r.uniform(-1, 1) for _ in range(dims)] for _ in range(n)]


def seed(s):
    s.call("POST", "/vectors/indexes", {"name": "docs", "dims": 16, "metric": "l2"})
    rows = vectors(2000, 16)
    st, r = s.call("POST", "/vectors/indexes/docs/vectors",
                   {"vectors": [{"id": str(i), "vector": v} for i, v in enumerate(rows)]})
    assert st == 200, r
    st, r = s.call("POST", "/vectors/harness/autogen", {"name": "smoke", "index_name": "docs", "queries": 30, "k": 10})
    assert st == 201, r
    grid = [{"ef_construction": ec, "ef_search": ef, "m": m} for m in (8, 16) for ec in (40, 100) for ef in (10, 40, 120)]
    st, r = s.call("POST", "/vectors/hnsw/autotune", {"index_name": "docs", "harness": "smoke", "grid": grid,
                                                       "promote": "always", "min_recall": 0.0})
    assert st == 200, r
    st, r = s.call("POST", "/vectors/hnsw/trial", {"index_name": "docs", "harness": "smoke",
                                                    "config": {"ef_construction": 60, "ef_search": 30}})
    assert st == 200, r  # a manual trial: two sources to filter by
    st, r = s.call("POST", "/vectors/indexes/docs/activate")
    assert st == 200, r


def watch(page, base, console, foreign):
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(str(e)))
    page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(base) else None)


def plot(page):
    el = page.wait_for_selector("[data-testid=pareto-plot]", timeout=15000)
    return int(el.get_attribute("data-points")), int(el.get_attribute("data-frontier"))


def wait_until(fn, secs=20):
    t = time.time()
    while time.time() - t < secs:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    return fn()


def open_phase(browser, s, shots):
    console, foreign = [], []
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    watch(page, s.base, console, foreign)
    r = page.goto(s.base + "/ui")
    check(r.status == 200 and "default-src 'self'" in r.headers.get("content-security-policy", ""),
          "/ui is 200 with Content-Security-Policy default-src 'self'", r.headers)
    page.wait_for_selector("[data-testid=index-row]", timeout=15000)
    check(page.locator("[data-testid=index-row]").count() == 1, "the overview lists the index")
    page.screenshot(path=os.path.join(shots, "overview.png"), full_page=True)

    page.goto(s.base + "/ui/indexes/docs")
    points, frontier = plot(page)
    _, trials = s.call("GET", "/vectors/hnsw/trials/docs?harness=smoke")
    _, pareto = s.call("GET", "/vectors/hnsw/pareto/docs?harness=smoke")
    check(points == len(trials["trials"]), f"data-points is the journal's trial count for the harness ({points})",
          f"{points} vs {len(trials['trials'])}")
    check(frontier == len(pareto["points"]), f"data-frontier is GET pareto's point count ({frontier})",
          f"{frontier} vs {len(pareto['points'])}")
    check(page.locator("[data-testid=trial-row]").count() == len(trials["trials"]), "a table row per trial")
    # sorting by p50: two clicks give descending then ascending order
    def p50s():
        return [float(r.locator("td").nth(3).inner_text()) for r in page.locator("[data-testid=trial-row]").all()]
    page.locator("th[data-sort=p50]").click()
    page.wait_for_selector("th[data-sort=p50]:has-text('▼')", timeout=5000)
    desc = p50s()
    page.locator("th[data-sort=p50]").click()
    page.wait_for_selector("th[data-sort=p50]:has-text('▲')", timeout=5000)
    asc = p50s()
    check(desc == sorted(desc, reverse=True) and asc == sorted(asc) and len(asc) == len(desc) > 1,
          "the trials table sorts by a column, both ways", (desc, asc))
    page.select_option("[data-testid=source-filter]", "manual")
    page.locator("text=page 1 of 1 (1 trials)").wait_for(timeout=5000)
    check(page.locator("[data-testid=trial-row]").count() == 1, "the source filter shows only that source's trials")
    page.select_option("[data-testid=source-filter]", "")
    page.wait_for_selector("[data-testid=trial-row]", timeout=5000)
    page.screenshot(path=os.path.join(shots, "index.png"), full_page=True)

    # promote a row that is not the current promotion
    _, before = s.call("GET", "/vectors/hnsw/promoted/docs")
    row = page.locator("[data-testid=trial-row]:has([data-testid=promote-button])").first
    tid = row.get_attribute("data-trial")
    row.locator("[data-testid=promote-button]").click()
    after = wait_until(lambda: (lambda p: p if (p["current"] or {}).get("trial_id") == tid else None)(
        s.call("GET", "/vectors/hnsw/promoted/docs")[1]))
    check(bool(after), "promote from a table row changes GET promoted", after)
    # (selectors, not wait_for_function: the page's CSP forbids the eval it needs)
    page.locator("[data-testid=promotion-current]", has_text=tid).wait_for(timeout=10000)
    page.locator("[data-testid=rollback-button]").click()
    restored = wait_until(lambda: (lambda p: p if (p["current"] or {}).get("trial_id") ==
                                   (before["current"] or {}).get("trial_id") else None)(
        s.call("GET", "/vectors/hnsw/promoted/docs")[1]))
    check(bool(restored), "rollback restores the previous current", restored)

    # a running async autotune, watched to its end
    grid = [{"ef_construction": 150 + 10 * i, "ef_search": 60, "m": 24} for i in range(4)]
    st, job = s.call("POST", "/vectors/hnsw/autotune?async=true", {"index_name": "docs", "harness": "smoke",
                                                                   "grid": grid, "promote": "never"})
    check(st == 202, "an async autotune starts", job)
    seen = set()

    def progressed():
        for el in page.locator("[data-testid=job-progress]").all():
            d, t = int(el.get_attribute("data-done")), int(el.get_attribute("data-total"))
            if t == 4:
                seen.add(d)
                if d == t:
                    return True
        return False
    check(wait_until(progressed, 120), f"the job's progress bar reaches done == total (saw done {sorted(seen)})")
    points2, _ = plot(page)
    check(points2 == points + 4, "the plot grew by the job's trials while the page was open", f"{points} -> {points2}")
    check(not console, "no console errors", console)
    check(not foreign, "no request to another host", foreign)
    ctx.close()


def auth_phase(browser, binary, store, shots):
    s = Server(binary, store, {"VECTUNE_API_TOKEN": ADMIN, "VECTUNE_READ_TOKEN": READ})
    try:
        console, foreign = [], []
        ctx = browser.new_context()
        page = ctx.new_page()
        watch(page, s.base, console, foreign)
        page.goto(s.base + "/ui/indexes/docs")
        box = page.wait_for_selector("[data-testid=token-input]", state="visible", timeout=10000)
        check(box is not None, "with auth on, the page asks for a token")
        box.fill(ADMIN)
        box.press("Enter")
        plot(page)
        check(page.evaluate("sessionStorage.getItem('vectune_token')") == ADMIN, "the token is kept in sessionStorage")
        page.wait_for_selector("[data-testid=rollback-button]", timeout=10000)
        check(page.locator("[data-testid=promote-button]").count() > 0, "the admin token shows write buttons")
        page.reload()
        plot(page)
        check(page.locator("[data-testid=token-input]").is_hidden(), "a token already in sessionStorage is used")
        check(not console, "no console errors with auth on", console)
        ctx.close()

        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(s.base + "/ui/indexes/docs")
        box = page.wait_for_selector("[data-testid=token-input]", state="visible", timeout=10000)
        box.fill(READ)
        box.press("Enter")
        plot(page)
        page.wait_for_selector("[data-testid=trial-row]", timeout=10000)
        writes = page.locator("[data-testid=rollback-button], [data-testid=promote-button], "
                              "[data-testid=agent-enable], [data-testid=agent-disable]").count()
        check(writes == 0, "a read-only token shows no write buttons", writes)
        page.screenshot(path=os.path.join(shots, "index-read-only.png"), full_page=True)
        ctx.close()
    finally:
        s.stop()


def scale_phase(browser, binary, shots):
    """5,000 trials in one journal: how long the index page takes to render them."""
    d = tempfile.mkdtemp(prefix="vectune-ui-5k-")
    s = Server(binary, d)
    try:
        s.call("POST", "/vectors/indexes", {"name": "big", "dims": 4, "metric": "l2"})
        s.call("POST", "/vectors/indexes/big/vectors",
               {"vectors": [{"id": str(i), "vector": v} for i, v in enumerate(vectors(60, 4))]})
        s.call("POST", "/vectors/harness/autogen", {"name": "bh", "index_name": "big", "queries": 5, "k": 3})
        grid = [{"ef_construction": ec, "ef_search": ef, "m": m}
                for m in (4, 5, 6, 7, 8, 9) for ec in range(10, 410, 40) for ef in range(10, 201, 2)][:5000]
        t = time.time()
        st, r = s.call("POST", "/vectors/hnsw/autotune", {"index_name": "big", "harness": "bh", "grid": grid,
                                                           "promote": "never", "min_recall": 0.0})
        check(st == 200 and r.get("trials_run") == 5000, f"5,000 trials journaled ({time.time() - t:.0f} s)",
              (st, {k: r.get(k) for k in ("trials_run", "error")} if isinstance(r, dict) else r))
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        t = time.time()
        page.goto(s.base + "/ui/indexes/big")
        page.wait_for_selector("[data-testid=pareto-plot][data-points='5000']", timeout=120000)
        secs = time.time() - t
        check(True, f"the index page rendered 5,000 trials in {secs:.2f} s (navigation to a drawn plot)")
        check(page.locator("[data-testid=trial-row]").count() == 50, "the table shows 50 trials a page")
        page.locator("button:has-text('›')").click()
        page.locator("text=page 2 of 100").wait_for(timeout=10000)
        check(page.locator("[data-testid=trial-row]").count() == 50, "the next page of the table: page 2 of 100")
        page.screenshot(path=os.path.join(shots, "index-5000.png"))
        ctx.close()
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)


def launch(p, chromium):
    """Debian's chromium, started again once if it dies while starting: on this VM it has
    crashed at launch (SIGSEGV before any page, once in many runs), which says nothing of the
    dashboard; a second crash is reported as it is."""
    try:
        return p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    except Exception as e:  # playwright's TargetClosedError: the browser process died
        print(f"note: chromium died while starting ({type(e).__name__}); starting it once more", flush=True)
        return p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/vectune")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--shots", default=os.path.join(tempfile.gettempdir(), "vectune-ui-shots"))
    args = ap.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    binary = os.path.abspath(args.bin)
    store = tempfile.mkdtemp(prefix="vectune-ui-")
    try:
        with sync_playwright() as p:
            browser = launch(p, args.chromium)
            s = Server(binary, store)
            try:
                seed(s)
                open_phase(browser, s, args.shots)
            finally:
                s.stop()
            auth_phase(browser, binary, store, args.shots)
            scale_phase(browser, binary, args.shots)
            browser.close()
    finally:
        shutil.rmtree(store, ignore_errors=True)
    print(f"screenshots in {args.shots}")
    print(f"{len(PASSED)} passed, {len(FAILED)} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
