#!/usr/bin/env python3
"""Soak run: mixed portal and API load on loopback for a while (10 minutes by default) against a release build
on SQLite, then the verdict: every answer a success (no 4xx/5xx, no socket errors) and memory flat (the
server's own memory, anonymous RSS, over the last quarter of the run within 10% of the second quarter, after
warm-up; the file-backed part of RSS is the database's mapped pages and grows with the file). Writes its
figures into docs/security.md. Not a test: run it by hand (`python3 tests/bench/soak.py`), as for the
benchmark. It installs wrk and builds the release binary if needed.

The mix, per round of 15 requests: the portal Health page (2), Messages, Documents; FHIR read by id (3), the
lab search (2), the six newest documents, `$everything` (first page), a SMART patient-token read (2), a new
Observation, the CapabilityStatement. Every request is audited, so the database grows throughout.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the benchmark's server, login and wrk helpers)

MARK_START, MARK_END = "<!-- soak:start -->", "<!-- soak:end -->"


def mix_script(path, cookie, system, patient):
    entry, _ = bench.transaction_body(1)
    fhir_json = {"Accept": "application/fhir+json"}
    requests = []

    def add(times, method, url, headers, body=None):
        requests.extend([(method, url, headers, body)] * times)

    portal = {"Cookie": cookie}
    api = {**fhir_json, "Authorization": "Bearer " + system}
    add(2, "GET", "/", portal)
    add(1, "GET", "/messages", portal)
    add(1, "GET", "/documents", portal)
    add(3, "GET", "/fhir/Observation/g1-p0-o0-0", api)
    add(2, "GET", "/fhir/Observation?patient=g1-p0&category=laboratory&_sort=-date&_count=50", api)
    add(1, "GET", "/fhir/DocumentReference?patient=g1-p0&_sort=-date&_count=6", api)
    add(1, "GET", "/fhir/Patient/g1-p0/$everything", api)
    add(2, "GET", "/fhir/Observation/g1-p0-o0-1", {**fhir_json, "Authorization": "Bearer " + patient})
    add(1, "POST", "/fhir/Observation", {**api, "Content-Type": "application/fhir+json"}, json.dumps(entry))
    add(1, "GET", "/fhir/metadata", fhir_json)
    lua = ["local requests = {}"]
    for method, url, headers, body in requests:
        h = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
        lua.append(f"table.insert(requests, wrk.format({json.dumps(method)}, {json.dumps(url)}, {{{h}}}, "
                   f"{json.dumps(body) if body else 'nil'}))")
    lua.append("local i = 0\nrequest = function()\n  i = i % #requests + 1\n  return requests[i]\nend")
    with open(path, "w") as f:
        f.write("\n".join(lua) + "\n" + bench.WRK_REPORT)
    return len(requests)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--out", default=os.path.join(bench.ROOT, "docs", "security.md"))
    args = p.parse_args()
    bench.ensure_tools()
    workdir = tempfile.mkdtemp(prefix="carespace-soak-")
    db = bench.Database("sqlite", workdir)
    bench.log("generating 20 patients x 500 labs")
    bench.carespace(db, "generate", "--patients", "20", "--labs-per-patient", "500", "--docs-per-patient", "6",
                    "--seed", "1")
    server = bench.Server(db, bench.free_port())
    system = bench.system_token(db, server.origin)
    browser = bench.patient_login(db, server.origin, system, "g1-p0")
    patient = bench.smart_token(db, server.origin, browser)
    script = os.path.join(workdir, "mix.lua")
    per_round = mix_script(script, browser.cookie_header(), system, patient)
    db_before = db.size_bytes()

    samples, done = [], threading.Event()

    def sample():
        start = time.time()
        while not done.wait(5):
            samples.append((time.time() - start, server.rss_kib("RssAnon") / 1024, server.rss_kib("RssFile") / 1024))

    sampler = threading.Thread(target=sample)
    sampler.start()
    seconds = int(args.minutes * 60)
    bench.log(f"soaking for {seconds} s with {args.connections} connections ({per_round} requests per round)")
    out = bench.subprocess.run(["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{seconds}s", "-s", script,
                                "--timeout", "30s", server.origin], capture_output=True, text=True, check=True).stdout
    done.set()
    sampler.join()
    n, micros, p50, p99, status_errors, socket_errors = map(
        int, bench.re.search(r"RESULT (.*)", out).group(1).split())
    quarter = seconds / 4
    second_q = [m for t, m, _ in samples if quarter <= t < 2 * quarter]
    last_q = [m for t, m, _ in samples if t >= 3 * quarter]
    mapped = max(f for _, _, f in samples)
    early, late = sum(second_q) / len(second_q), sum(last_q) / len(last_q)
    growth = late / early - 1
    flat = growth <= 0.10
    errors = status_errors + socket_errors
    peak = server.rss_kib("VmHWM") / 1024
    server.stop()
    verdict = "passed" if errors == 0 and flat else "FAILED"
    lines = [
        MARK_START,
        "",
        f"Soak run {verdict}: {bench.machine()}",
        "",
        f"- {args.minutes:g} minutes, {args.connections} connections, {n:,} requests ({n / (micros / 1e6):,.0f}/s), "
        f"p50 {p50 / 1000:.1f} ms, p99 {p99 / 1000:.1f} ms.",
        f"- Errors: {status_errors} answers other than 2xx/3xx, {socket_errors} socket errors.",
        f"- Server memory (anonymous RSS): {early:.0f} MiB on average in the second quarter, {late:.0f} MiB in the "
        f"last ({growth:+.1%}; flat means within +10%). Peak RSS {peak:.0f} MiB, of which up to {mapped:.0f} MiB "
        f"file-backed (the database's mapped pages).",
        f"- Database: {db_before / 2**20:,.0f} MiB before, {db.size_bytes() / 2**20:,.0f} MiB after (every request "
        f"is audited, and one in {per_round} creates an Observation).",
        "",
        MARK_END,
    ]
    bench.replace_section(args.out, MARK_START, MARK_END, lines[1:-1])
    bench.log("\n".join(lines[2:-2]))
    bench.shutil.rmtree(workdir, ignore_errors=True)
    if verdict != "passed":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
