#!/usr/bin/env python3
"""Does the portal tell who has an account? Measures, against a release build on SQLite, the answer (status and
words) and its time for: a known email with a wrong password, a known email and password with a wrong birth
date, an unknown email; and a password-reset request for a known and an unknown email. Writes the figures into
docs/security.md. Not a test (timings vary): run it by hand, `python3 tests/bench/enumeration.py`.

The throttles are part of what is measured, so each attempt stays under the locks: every email, known or not,
is tried four times (the third and fourth failures are slowed, five would lock it), and requests come from
many loopback addresses (127.0.0.x), at most eight sign-in failures or four reset requests each.
"""

import argparse
import http.client
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402

MARK_START, MARK_END = "<!-- enumeration:start -->", "<!-- enumeration:end -->"


class Source:
    """A browser at one loopback address: its own connection, cookies and CSRF token."""

    def __init__(self, port, n):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, source_address=(f"127.0.0.{n}", 0), timeout=30)
        self.cookies = {}

    def send(self, method, path, fields=None):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if fields is not None:
            body = urllib.parse.urlencode(fields)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.perf_counter()
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        text = r.read().decode()
        elapsed = (time.perf_counter() - started) * 1000
        for value in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";")[0]
        return r.status, text, elapsed

    def post_form(self, page, action, typed):
        _, body, _ = self.send("GET", page)
        fields = {**bench.Forms(body).fields, **typed}
        return self.send("POST", action, fields)


def words(html, *hide):
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()
    for h in hide:
        text = text.replace(h, "…")
    return text


def summary(times):
    times = sorted(times)
    return statistics.median(times), times[int(len(times) * 0.9)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(bench.ROOT, "docs", "security.md"))
    args = p.parse_args()
    bench.ensure_tools()
    workdir = tempfile.mkdtemp(prefix="carespace-enum-")
    db = bench.Database("sqlite", workdir)
    bench.carespace(db, "generate", "--patients", "12", "--labs-per-patient", "1", "--docs-per-patient", "0",
                    "--seed", "1")
    server = bench.Server(db, bench.free_port())
    token = bench.system_token(db, server.origin)
    accounts = []
    for i in range(12):
        patient = f"g1-p{i}"
        bench.patient_login(db, server.origin, token, patient)
        birth = bench.api("GET", f"{server.origin}/fhir/Patient/{patient}", token)["birthDate"]
        accounts.append((f"{patient}@bench.example", birth))

    kinds = {"known email, wrong password": [], "known email and password, wrong birth date": [],
             "unknown email": []}
    texts = {k: set() for k in kinds}
    sources = iter(range(2, 250))
    source, used = None, 8
    for attempt in range(24):
        for kind in kinds:
            if used == 8:
                source, used = Source(server.port, next(sources)), 0
            if kind == "unknown email":
                # As many tries per unknown email as per account: the throttle slows both alike.
                email, password, birth = f"nobody{attempt % 6}@bench.example", bench.PASSWORD, "1970-01-01"
            elif kind.endswith("wrong password"):
                email, birth = accounts[attempt % 6]
                password = "Wrong-Pass-1!"
            else:
                email, birth = accounts[6 + attempt % 6]
                password, birth = bench.PASSWORD, "1900-01-01"
            status, body, ms = source.post_form("/login", "/login",
                                                {"email": email, "password": password, "birth_date": birth})
            used += 1
            kinds[kind].append(ms)
            texts[kind].add((status, words(body, email)))

    resets = {"known email": [], "unknown email": []}
    reset_texts = {k: set() for k in resets}
    used = 4
    for attempt in range(20):
        for kind in resets:
            if used >= 4:
                source, used = Source(server.port, next(sources)), 0
            email = accounts[attempt % 12][0] if kind == "known email" else f"ghost{attempt}@bench.example"
            status, body, ms = source.post_form("/forgot-password", "/forgot-password", {"email": email})
            used += 1
            resets[kind].append(ms)
            reset_texts[kind].add((status, words(body, email)))
    server.stop()

    same_login = len(set().union(*texts.values())) == 1
    same_reset = len(set().union(*reset_texts.values())) == 1
    lines = [MARK_START, "", f"Measured {bench.machine()}", "",
             "| Request | Tries | Status | median ms | p90 ms |", "|---|---:|---:|---:|---:|"]
    for kind, times in kinds.items():
        median, p90 = summary(times)
        statuses = ", ".join(sorted({str(s) for s, _ in texts[kind]}))
        lines.append(f"| sign-in: {kind} | {len(times)} | {statuses} | {median:.0f} | {p90:.0f} |")
    for kind, times in resets.items():
        median, p90 = summary(times)
        statuses = ", ".join(sorted({str(s) for s, _ in reset_texts[kind]}))
        lines.append(f"| reset request: {kind} | {len(times)} | {statuses} | {median:.0f} | {p90:.0f} |")
    medians = [summary(t)[0] for t in kinds.values()]
    reset_medians = [summary(t)[0] for t in resets.values()]
    lines += [
        "",
        f"- Sign-in answers: {'one and the same page' if same_login else 'NOT the same page'} for all three; medians "
        f"within {max(medians) - min(medians):.0f} ms of each other (each runs one Argon2id verification; the third and "
        f"fourth failures of an email are slowed by the throttle, known or not).",
        f"- Reset answers: {'one and the same page' if same_reset else 'NOT the same page'} for both; medians within "
        f"{max(reset_medians) - min(reset_medians):.0f} ms (the email is composed after the answer).",
        "",
        MARK_END,
    ]
    bench.replace_section(args.out, MARK_START, MARK_END, lines[1:-1])
    bench.log("\n".join(lines[2:-2]))
    bench.shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
