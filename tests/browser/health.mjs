// The Health tab in Chromium, as a patient uses it: latest results, one test's history and chart, six
// documents then "View All Documents", a PDF, Download, View and Resources. axe-core checks every page for
// accessibility violations, and each page is photographed at desktop and phone width into SCREENSHOT_DIR.
// Run by tests/api/browser.rs, which starts the server and passes the details.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("BASE_URL");
const shots = env("SCREENSHOT_DIR");
mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});

/// No axe violations on the current page, then screenshots at desktop and phone width.
async function check(page, name) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const found = result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
  assert.deepEqual(found, [], `accessibility violations on ${name}`);
  for (const [label, width] of [["desktop", 1280], ["phone", 360]]) {
    await page.setViewportSize({ width, height: 900 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name} scrolls sideways at ${width} px`);
    await page.screenshot({ path: join(shots, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

try {
  // Our CSP allows no injected script; axe is injected by the test, so the test context bypasses it.
  const context = await browser.newContext({ bypassCSP: true, acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/login`);
  await check(page, "login");
  await page.getByLabel("Email address").fill(env("PATIENT_EMAIL"));
  await page.getByLabel("Password").fill(env("PATIENT_PASSWORD"));
  await page.getByLabel("Date of birth").fill(env("PATIENT_BIRTH_DATE"));
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Health", exact: true }).waitFor();

  // The latest value of each test; one test's history and chart.
  const labs = page.locator("table.labs");
  await labs.locator("td[data-label=Result]", { hasText: env("LATEST_VALUE") }).waitFor();
  await page.getByText(env("TEST_NAME"), { exact: true }).click();
  const history = page.locator("table.history").first();
  await history.waitFor();
  assert.equal(await history.locator("tbody tr").count(), Number(env("HISTORY_COUNT")));
  assert.equal(await page.locator("svg.trend").first().isVisible(), true);
  await check(page, "health");

  // Exactly six documents, then all of them.
  assert.equal(await page.locator("table.documents tbody tr").count(), 6);
  await page.getByRole("link", { name: "View All Documents" }).click();
  await page.getByRole("heading", { name: "All Documents" }).waitFor();
  assert.equal(await page.locator("table.documents tbody tr").count(), Number(env("DOCUMENT_COUNT")));
  await check(page, "documents");
  const pdfHref = await page.locator("table.documents tbody tr a").first().getAttribute("href");
  const pdf = await page.request.get(`${base}${pdfHref}`);
  assert.equal(pdf.headers()["content-type"], "application/pdf");
  assert.ok((await pdf.body()).toString("latin1").startsWith("%PDF"));

  // Download: a zip.
  await page.goto(`${base}/`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download" }).click()]);
  const saved = join(shots, "..", "download.zip");
  await download.saveAs(saved);
  assert.equal(readFileSync(saved).subarray(0, 2).toString(), "PK");

  // View: the printable summary.
  await page.getByRole("link", { name: "View", exact: true }).click();
  await page.getByRole("heading", { name: "Health record summary" }).waitFor();
  await check(page, "summary");

  // Resources.
  await page.getByRole("link", { name: "Resources" }).click();
  for (const name of ["National Cancer Institute", "American Cancer Society", "CancerCare"]) {
    await page.getByRole("link", { name }).waitFor();
  }
  await check(page, "resources");
  console.log("health walk passed");
} finally {
  await browser.close();
}
