// Friends and family in Chromium, by visible labels: the patient opens "Manage Users" from the menu under
// their name and grants access (PHASE=grant); the person follows the emailed link (LINK, read by the Rust
// side from its SMTP server), is refused with a wrong date of birth, registers, logs in and sees the patient's
// record with the banner naming whose it is, without "Manage Users" (PHASE=accept).
import assert from "node:assert/strict";
import { check, env, launch, logIn } from "./common.mjs";

const base = env("BASE_URL");
const proxy = { email: env("PROXY_EMAIL"), birthDate: env("PROXY_BIRTH_DATE") };
const password = "Kind-Sister-58!";
const browser = await launch();

try {
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  if (env("PHASE") === "grant") {
    await page.goto(`${base}/login`);
    await logIn(page, env("PATIENT_EMAIL"), env("PATIENT_PASSWORD"), env("PATIENT_BIRTH_DATE"));
    await page.getByRole("heading", { name: "Health", exact: true }).waitFor();
    await page.getByText(env("PATIENT_NAME"), { exact: true }).click();
    await page.getByRole("link", { name: "Manage Users" }).click();
    await page.getByRole("heading", { name: "Manage Users" }).waitFor();
    await page.getByLabel("Their email address").fill(proxy.email);
    await page.getByLabel("Their date of birth").fill(proxy.birthDate);
    await page.getByLabel("Their name (optional)").fill("Hanna Roth");
    await page.getByLabel("Relationship (optional)").selectOption({ label: "Sibling" });
    await page.getByRole("button", { name: "Grant access" }).click();
    await page.getByText(`Access granted: we emailed ${proxy.email}.`).waitFor();
    const row = page.locator("table.proxies tbody tr", { hasText: proxy.email });
    assert.ok((await row.textContent()).includes("Invited"));
    await row.getByRole("button", { name: `Revoke access for ${proxy.email}` }).waitFor();
    await check(page, "manage-users");
    console.log("proxies grant walk passed");
  } else {
    await page.goto(env("LINK"));
    await page.getByRole("heading", { name: "Complete Your Registration" }).waitFor();
    await page.getByLabel("Date of birth").fill("1999-09-09");
    await page.getByLabel("Password", { exact: true }).fill(password);
    await page.getByLabel("Confirm password").fill(password);
    await page.getByRole("button", { name: "Complete Registration" }).click();
    await page.getByText("The date of birth does not match our records.").waitFor();
    await page.getByLabel("Date of birth").fill(proxy.birthDate);
    await page.getByLabel("Password", { exact: true }).fill(password);
    await page.getByLabel("Confirm password").fill(password);
    await page.getByRole("button", { name: "Complete Registration" }).click();
    await page.waitForURL(`${base}/login?registered=1`);
    await logIn(page, proxy.email, password, proxy.birthDate);
    await page.getByRole("heading", { name: "Health", exact: true }).waitFor();
    await page.getByText(`You are viewing the record of ${env("PATIENT_NAME")}`).waitFor();
    await page.locator("table.labs td[data-label=Result]", { hasText: env("LATEST_VALUE") }).waitFor();
    await check(page, "proxy-health");
    await page.getByText("Hanna Roth", { exact: true }).click();
    await page.getByRole("button", { name: "Log out" }).waitFor();
    assert.equal(await page.getByRole("link", { name: "Manage Users" }).count(), 0);
    console.log("proxies accept walk passed");
  }
} finally {
  await browser.close();
}
