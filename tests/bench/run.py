#!/usr/bin/env python3
"""CareSpace benchmark (not a test): a release build on 127.0.0.1 with generated data, driven by wrk on loopback.

    python3 tests/bench/run.py                       # both engines, 10k and 1M Observations
    python3 tests/bench/run.py --engines sqlite --sizes 10k --duration 5

Installs wrk (Debian) when missing, builds `cargo build --release`, and for each engine and size: generates the
data (`carespace generate`, timed: the straight-into-the-store import rate), starts the server, registers a
patient through the emailed invitation, authorizes a SMART app for them, measures every scenario with wrk (and
the multi-page walks with a sequential client), and finally replaces the results section of docs/benchmarks.md.
PostgreSQL: CARESPACE_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres, the machine's own,
started or installed by .ci/postgres as for CI); a database named carespace_bench is dropped and made again.
"""

import argparse
import base64
import email
import email.policy
import hashlib
import html.parser
import http.cookiejar
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, "target", "release", "carespace")
LABS_PER_PATIENT = 500
SIZES = {"10k": 10_000, "1m": 1_000_000}
PASSWORD = "Bench-Mark-2026!"
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"


def log(*parts):
    print("bench:", *parts, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_tools(engines):
    if "postgres" in engines and "CARESPACE_BENCH_POSTGRES_URL" not in os.environ:
        # The default database is the machine's own PostgreSQL: started, or installed, as CI does.
        subprocess.run([os.path.join(ROOT, ".ci", "postgres")], check=True)
    if not shutil.which("wrk"):
        log("installing wrk")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    log("building the release binary")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


class Database:
    """A fresh database for one run: a SQLite file in the data folder, or the carespace_bench PostgreSQL one."""

    def __init__(self, engine, data_dir):
        self.engine, self.data_dir = engine, data_dir
        if engine == "sqlite":
            self.url = "sqlite://" + os.path.join(data_dir, "carespace.db")
        else:
            admin = os.environ.get("CARESPACE_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
            self.admin = admin
            self.url = admin.rsplit("/", 1)[0] + "/carespace_bench"
            self.psql("DROP DATABASE IF EXISTS carespace_bench WITH (FORCE)")
            self.psql("CREATE DATABASE carespace_bench")

    def psql(self, sql, url=None):
        out = subprocess.run(["psql", url or self.admin, "-qtAc", sql], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def size_bytes(self):
        if self.engine == "sqlite":
            base = os.path.join(self.data_dir, "carespace.db")
            return sum(os.path.getsize(p) for p in (base, base + "-wal") if os.path.exists(p))
        return int(self.psql("SELECT pg_database_size('carespace_bench')"))

    def resources(self):
        sql = "SELECT COUNT(*) FROM resources"
        if self.engine == "sqlite":
            import sqlite3

            with sqlite3.connect(os.path.join(self.data_dir, "carespace.db")) as c:
                return c.execute(sql).fetchone()[0]
        return int(self.psql(sql, self.url))


def carespace(db, *args, stdin=""):
    env = dict(os.environ, CARESPACE_DATA_DIR=db.data_dir, CARESPACE_DATABASE_URL=db.url, RUST_LOG="warn")
    env.pop("CARESPACE_SMTP_URL", None)
    out = subprocess.run([BINARY, *args], env=env, input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"carespace {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


class Server:
    def __init__(self, db, port, base=None):
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        env = dict(
            os.environ,
            CARESPACE_DATA_DIR=db.data_dir,
            CARESPACE_DATABASE_URL=db.url,
            CARESPACE_LISTEN=f"127.0.0.1:{port}",
            CARESPACE_BASE_URL=base or self.origin,
            RUST_LOG="warn",
        )
        env.pop("CARESPACE_SMTP_URL", None)
        self.process = subprocess.Popen([BINARY, "serve"], env=env, stdout=subprocess.DEVNULL)
        for _ in range(600):
            try:
                with urllib.request.urlopen(self.origin + "/readyz", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise SystemExit("the server did not become ready")

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


class Forms(html.parser.HTMLParser):
    """What a browser submits besides what the person types: hidden inputs and ticked boxes."""

    def __init__(self, body):
        super().__init__()
        self.fields = {}
        self.feed(body)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("value") is not None:
            if a.get("type") == "hidden" or (a.get("type") == "checkbox" and "checked" in a):
                self.fields.setdefault(a["name"], a["value"])


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    def __init__(self, origin):
        self.origin = origin
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())

    def request(self, path, fields=None):
        url = path if path.startswith("http") else self.origin + path
        data = urllib.parse.urlencode(fields).encode() if fields is not None else None
        try:
            with self.opener.open(url, data=data, timeout=30) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def submit(self, page, action, typed):
        return self.request(action, {**Forms(page).fields, **typed})

    def cookie_header(self):
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def api(method, url, token, body=None, auth=None, form=None):
    headers = {"accept": "application/fhir+json"}
    if token:
        headers["authorization"] = "Bearer " + token
    if auth:
        headers["authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    data = None
    if body is not None:
        data, headers["content-type"] = json.dumps(body).encode(), "application/fhir+json"
    if form is not None:
        data, headers["content-type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def system_token(db, origin):
    client = json.loads(carespace(db, "client", "add", "--name", "bench", "--secret", "--scope", "system/*.cruds"))
    answer = api("POST", origin + "/oauth/token", None, auth=f"{client['client_id']}:{client['client_secret']}",
                 form={"grant_type": "client_credentials", "scope": "system/*.cruds"})
    return answer["access_token"]


def patient_login(db, origin, token, patient):
    """Invites `patient` (email to the outbox folder), registers from the emailed link and logs in."""
    birth = api("GET", f"{origin}/fhir/Patient/{patient}", token)["birthDate"]
    address = f"{patient}@bench.example"
    carespace(db, "invite", patient, address)
    outbox = os.path.join(db.data_dir, "outbox")
    letters = sorted(os.listdir(outbox), key=lambda f: os.path.getmtime(os.path.join(outbox, f)))
    with open(os.path.join(outbox, letters[-1]), "rb") as f:
        letter = email.message_from_binary_file(f, policy=email.policy.default)
    text = letter.get_body(("plain",)).get_content()
    link = re.search(r"https?://\S+/register\?token=[\w-]+", text).group(0)
    browser = Browser(origin)
    _, _, page = browser.request(urllib.parse.urlsplit(link)._replace(scheme="", netloc="").geturl())
    status, _, body = browser.submit(page, "/register", {"birth_date": birth, "password": PASSWORD, "confirm": PASSWORD})
    assert status == 303, f"registration failed ({status}): {body[:500]}"
    _, _, page = browser.request("/login")
    status, _, body = browser.submit(page, "/login", {"email": address, "password": PASSWORD, "birth_date": birth})
    assert status == 303, f"login failed ({status}): {body[:500]}"
    return browser


def smart_token(db, origin, browser):
    """A patient-facing SMART app's token, through the authorization-code flow with PKCE."""
    redirect = "http://127.0.0.1:9/callback"
    scopes = "launch/patient openid fhirUser patient/*.rs"
    client = json.loads(carespace(db, "client", "add", "--name", "Bench App", "--public", "--redirect-uri", redirect,
                                  "--scope", scopes))
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": redirect, "scope": scopes,
        "state": "bench", "aud": origin + "/fhir", "code_challenge": challenge, "code_challenge_method": "S256"})
    status, _, consent = browser.request("/oauth/authorize?" + query)
    assert status == 200, f"consent page ({status}): {consent[:500]}"
    status, headers, body = browser.submit(consent, "/oauth/authorize", {"decision": "allow"})
    assert status == 303, f"consent ({status}): {body[:500]}"
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["location"]).query)["code"][0]
    answer = api("POST", origin + "/oauth/token", None, form={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
        "client_id": client["client_id"], "code_verifier": verifier})
    return answer["access_token"]


WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status, summary.errors.connect +
    summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def wrk(url, connections, duration, headers=(), method="GET", body=None, workdir=None):
    """Runs wrk; returns dict with rps, p50/p99 in ms and errors (non-2xx/3xx answers and socket errors)."""
    script = os.path.join(workdir, "report.lua")
    with open(script, "w") as f:
        if body is not None:
            f.write(f"wrk.method = {json.dumps(method)}\nwrk.body = {json.dumps(body)}\n")
        f.write(WRK_REPORT)
    args = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{duration}s", "-s", script,
            "--timeout", "30s"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    n, micros, p50, p99, status_errors, socket_errors = map(int, re.search(r"RESULT (.*)", out).group(1).split())
    return {"rps": n / (micros / 1e6), "p50": p50 / 1000, "p99": p99 / 1000, "errors": status_errors + socket_errors,
            "requests": n}


def walk(first_url, token, runs=5):
    """Follows `next` links from `first_url` to the end; returns (median ms, pages, entries) over `runs` walks."""
    times, pages, entries = [], 0, 0
    for _ in range(runs):
        started, url, pages, entries = time.perf_counter(), first_url, 0, 0
        while url:
            bundle = api("GET", url, token)
            pages, entries = pages + 1, entries + len(bundle.get("entry", []))
            url = next((l["url"] for l in bundle.get("link", []) if l["relation"] == "next"), None)
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[len(times) // 2], pages, entries


def transaction_body(size):
    entry = {"resourceType": "Observation", "status": "final",
             "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                       "code": "laboratory"}]}],
             "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}], "text": "Glucose"},
             "subject": {"reference": "Patient/g1-p1"}, "effectiveDateTime": "2026-10-01T08:00:00Z",
             "valueQuantity": {"value": 91, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": entry, "request": {"method": "POST", "url": "Observation"}}] * size}
    return entry, bundle


def run_one(engine, size, duration, workdir):
    observations = SIZES[size]
    patients = observations // LABS_PER_PATIENT
    data_dir = tempfile.mkdtemp(prefix=f"carespace-bench-{engine}-{size}-", dir=workdir)
    db = Database(engine, data_dir)
    rows, notes = [], {}
    log(f"{engine} {size}: generating {patients} patients x {LABS_PER_PATIENT} labs")
    started = time.perf_counter()
    carespace(db, "generate", "--patients", str(patients), "--labs-per-patient", str(LABS_PER_PATIENT),
              "--docs-per-patient", "6", "--seed", "1")
    # One patient with a record of about 2,000 resources, for $everything.
    carespace(db, "generate", "--patients", "1", "--labs-per-patient", "1500", "--docs-per-patient", "62",
              "--seed", "2")
    seconds = time.perf_counter() - started
    total = db.resources()
    notes["resources"] = total
    notes["import_rate"] = total / seconds
    notes["db_bytes"] = db.size_bytes()

    server = Server(db, free_port())
    origin = server.origin
    time.sleep(1)
    notes["idle_rss_mib"] = server.rss_kib() / 1024
    token = system_token(db, origin)
    browser = patient_login(db, origin, token, "g1-p0")
    patient_token = smart_token(db, origin, browser)
    bearer, fhir = f"Authorization: Bearer {token}", origin + "/fhir"
    lab_search = f"{fhir}/Observation?patient=g1-p0&category=laboratory&_sort=-date&_count=50"

    def measure(name, url, connections, headers=(), method="GET", body=None, per_request=1):
        log(f"{engine} {size}: {name}")
        r = wrk(url, connections, duration, headers, method, body, workdir)
        r.update(name=name, connections=connections, per_request=per_request)
        rows.append(r)
        return r

    floor = measure("floor: static route (`/healthz`)", origin + "/healthz", 8)
    measure("read by id", f"{fhir}/Observation/g1-p0-o0-0", 1, [bearer])
    measure("read by id", f"{fhir}/Observation/g1-p0-o0-0", 8, [bearer])
    measure("vread", f"{fhir}/Observation/g1-p0-o0-0/_history/1", 8, [bearer])
    measure("lab search, first page of 50", lab_search, 8, [bearer])
    measure("DocumentReference, 6 newest", f"{fhir}/DocumentReference?patient=g1-p0&_sort=-date&_count=6", 8,
            [bearer])
    measure("`$everything`, first page (2,000-resource patient)", f"{fhir}/Patient/g2-p0/$everything", 2, [bearer])
    measure("portal Health page (logged-in patient, HTML)", origin + "/", 8, ["Cookie: " + browser.cookie_header()])
    measure("SMART patient-token read by id", f"{fhir}/Observation/g1-p0-o0-0", 8,
            [f"Authorization: Bearer {patient_token}"])
    entry, bundle = transaction_body(100)
    measure("create (single Observation)", f"{fhir}/Observation", 8,
            [bearer, "Content-Type: application/fhir+json"], "POST", json.dumps(entry))
    measure("transaction import (Bundles of 100 Observations)", fhir, 2,
            [bearer, "Content-Type: application/fhir+json"], "POST", json.dumps(bundle), per_request=100)

    notes["lab_walk"] = walk(lab_search, token)
    notes["everything_walk"] = walk(f"{fhir}/Patient/g2-p0/$everything", token)
    notes["peak_rss_mib"] = server.rss_kib("VmHWM") / 1024

    if engine == "postgres":
        # Scale-out: a second process on the same database, each driven by its own wrk at once.
        second = Server(db, free_port(), base=origin)
        for name, path in [("read by id", "/fhir/Observation/g1-p0-o0-0"), ("lab search, first page of 50",
                                                                            lab_search[len(origin):])]:
            log(f"{engine} {size}: two processes, {name}")
            procs = [subprocess.Popen([sys.executable, __file__, "--wrk-only", s.origin + path, token,
                                       str(duration), workdir + f"/{s.port}"], stdout=subprocess.PIPE, text=True)
                     for s in (server, second)]
            results = [json.loads(p.communicate()[0]) for p in procs]
            rows.append({"name": f"two processes, {name} (sum of both)", "connections": 16,
                         "rps": sum(r["rps"] for r in results), "p50": max(r["p50"] for r in results),
                         "p99": max(r["p99"] for r in results), "errors": sum(r["errors"] for r in results),
                         "per_request": 1})
        second.stop()
    server.stop()
    return {"engine": engine, "size": size, "rows": rows, "floor": floor["rps"], "notes": notes}


def table(result):
    n = result["notes"]
    lines = [
        f"### {'SQLite' if result['engine'] == 'sqlite' else 'PostgreSQL'}, {SIZES[result['size']]:,} Observations "
        f"({n['resources']:,} resources)",
        "",
        "| Scenario | Conns | Requests/s | Resources/s | p50 ms | p99 ms | vs floor | Errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        resources = f"{r['rps'] * r['per_request']:,.0f}" if r["per_request"] > 1 or "create" in r["name"] else ""
        lines.append(f"| {r['name']} | {r['connections']} | {r['rps']:,.0f} | {resources} | {r['p50']:.2f} | "
                     f"{r['p99']:.2f} | {r['rps'] / result['floor']:.1%} | {r['errors']} |")
    lab_ms, lab_pages, lab_entries = n["lab_walk"]
    all_ms, all_pages, all_entries = n["everything_walk"]
    lines += [
        "",
        f"- Lab search paged to the end (one client): {lab_entries:,} Observations in {lab_pages} pages, "
        f"{lab_ms:.0f} ms.",
        f"- `Patient/g2-p0/$everything` paged to the end (one client): {all_entries:,} resources in {all_pages} "
        f"pages, {all_ms:.0f} ms.",
        f"- Generation straight into the store (`carespace generate`, transactions of one patient each): "
        f"{n['import_rate']:,.0f} resources/s.",
        f"- Database size: {n['db_bytes'] / 2**20:,.0f} MiB, {n['db_bytes'] / n['resources'] * 1e6 / 2**30:,.2f} GiB "
        f"per million resources.",
        f"- Server memory: {n['idle_rss_mib']:.0f} MiB RSS idle after start, {n['peak_rss_mib']:.0f} MiB peak.",
        "",
    ]
    return "\n".join(lines)


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit.stdout.strip() or '?'}, "
            f"{os.cpu_count()} cores ({cpu}), {mem / 2**20:.0f} GiB, {platform.system()} {platform.release()}; "
            f"wrk and the server share the cores.")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--wrk-only":
        url, token, duration, workdir = sys.argv[2:6]
        os.makedirs(workdir, exist_ok=True)
        print(json.dumps(wrk(url, 8, int(duration), [f"Authorization: Bearer {token}"], workdir=workdir)))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", default="sqlite,postgres")
    p.add_argument("--sizes", default="10k,1m")
    p.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = p.parse_args()
    ensure_tools(args.engines.split(","))
    workdir = tempfile.mkdtemp(prefix="carespace-bench-")
    planned = [(engine, size) for size in args.sizes.split(",") for engine in args.engines.split(",")]
    results = []
    try:
        for engine, size in planned:
            results.append(run_one(engine, size, args.duration, workdir))
            log("\n" + table(results[-1]))
            # Written after every run, so a long run that is stopped still leaves what it measured.
            write_results(args.out, results, planned[len(results):])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def replace_section(path, start_mark, end_mark, lines):
    """Puts `lines` between the two marker comments in the document at `path` (the markers stay)."""
    with open(path) as f:
        doc = f.read()
    start, end = doc.index(start_mark), doc.index(end_mark) + len(end_mark)
    with open(path, "w") as f:
        f.write(doc[:start] + "\n".join([start_mark, *lines, end_mark]) + doc[end:])
    log(f"wrote {path}")


def write_results(path, results, pending):
    section = ["", f"Measured {machine()}", "", *map(table, results)]
    if pending:
        section += ["Not measured in this run: " + ", ".join(f"{e} at {s}" for e, s in pending) + ".", ""]
    replace_section(path, MARK_START, MARK_END, section)


if __name__ == "__main__":
    main()
