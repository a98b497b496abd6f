// The Health tab in Chromium, as a patient uses it: latest results, one test's history and chart, six
// documents then "View All Documents", a PDF, Download, View and Resources. axe-core checks every page for
// accessibility violations, and each page is photographed at desktop and phone width into SCREENSHOT_DIR.
// Run by tests/api/browser.rs, which starts the server and passes the details.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { check, env, launch, logIn } from "./common.mjs";

const base = env("BASE_URL");
const shots = env("SCREENSHOT_DIR");
const browser = await launch();

try {
  const context = await browser.newContext({ bypassCSP: true, acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/login`);
  await check(page, "login");
  await logIn(page, env("PATIENT_EMAIL"), env("PATIENT_PASSWORD"), env("PATIENT_BIRTH_DATE"));
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

  // Send Record: the form by its labels, then the confirmation.
  await page.goto(`${base}/`);
  await page.getByRole("link", { name: "Send Record" }).click();
  await page.getByRole("heading", { name: "Send Record" }).waitFor();
  await page.getByLabel("Provider's email address").fill("dr.lee@clinic.example");
  await page.getByLabel("Start date of the medical information").fill("2026-01-01");
  await page.getByLabel("End date of the medical information").fill("2026-12-31");
  await page.getByLabel("Notes for the recipient (optional)").fill("For my appointment next week.");
  await page.getByLabel("Password", { exact: true }).fill("Harbor-Lights-42!");
  await page.getByLabel("Confirm password").fill("Harbor-Lights-42!");
  await check(page, "send-record");
  await page.getByRole("button", { name: "Send Record" }).click();
  await page.getByRole("heading", { name: "Record sent" }).waitFor();
  await page.getByRole("link", { name: "Sent records" }).click();
  await page.getByText("dr.lee@clinic.example").waitFor();

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
