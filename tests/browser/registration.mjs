// Walks the front door in a real browser (Debian's Chromium, driven by Playwright), as a person would, by
// visible labels: the care team invites a patient; the patient opens the "Complete Your Registration" email
// from the outbox folder, sees the password rules checked live, registers, logs in, and logs out.
// Run by tests/api/browser.rs, which starts the server and passes its details in the environment.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { env, launch, logIn } from "./common.mjs";

const base = env("BASE_URL");
const outbox = env("OUTBOX_DIR");
const patient = { name: env("PATIENT_NAME"), email: env("PATIENT_EMAIL"), birthDate: env("PATIENT_BIRTH_DATE") };
const password = "Blue-Harbor-31!";

/// Waits for the newest .eml to `to` in the outbox folder and returns its first link under `prefix`.
async function linkFromEmail(to, prefix) {
  for (let i = 0; i < 100; i++) {
    const files = readdirSync(outbox).filter((f) => f.endsWith(".eml")).sort();
    for (const f of files.reverse()) {
      const raw = readFileSync(join(outbox, f), "utf8");
      if (!raw.includes(`To: ${to}`)) continue;
      // Undo quoted-printable: soft line breaks, then =XX escapes.
      const text = raw.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
      const start = text.indexOf(prefix);
      if (start >= 0) return text.slice(start).split(/[\s"<]/)[0];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no email to ${to} with a link to ${prefix}`);
}

const browser = await launch();
try {
  // The care team sends the invitation from the staff page.
  const staff = await (await browser.newContext()).newPage();
  await staff.goto(`${base}/staff/login`);
  await logIn(staff, env("STAFF_EMAIL"), env("STAFF_PASSWORD"));
  await staff.waitForURL(`${base}/staff`);
  await staff.getByLabel(`Email for ${patient.name}`).fill(patient.email);
  await staff.getByRole("button", { name: "Send invitation" }).click();
  await staff.getByText(`Invitation email sent for ${patient.name}`).waitFor();

  // The patient, on a phone-sized screen, follows the link in the email.
  const link = await linkFromEmail(patient.email, `${base}/register?token=`);
  const phone = await browser.newContext({ viewport: { width: 360, height: 740 } });
  const page = await phone.newPage();
  await page.goto(link);
  await page.getByRole("heading", { name: "Complete Your Registration" }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways at 360 px (${overflow} px)`);
  await page.getByLabel("Date of birth").fill(patient.birthDate);
  // The rules are checked while typing: a weak password leaves four unmet.
  await page.getByLabel("Password", { exact: true }).fill("weak");
  assert.equal(await page.locator("#password-rules li.unmet").count(), 4);
  assert.equal(await page.locator("#password-rules li.met").count(), 1);
  await page.getByLabel("Password", { exact: true }).fill(password);
  assert.equal(await page.locator("#password-rules li.unmet").count(), 0);
  // A mismatched confirmation is refused by the server, next to its field.
  await page.getByLabel("Confirm password").fill(password + "x");
  await page.getByRole("button", { name: "Complete Registration" }).click();
  await page.getByText("The two passwords do not match.").waitFor();
  await page.getByLabel("Date of birth").fill(patient.birthDate);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByLabel("Confirm password").fill(password);
  await page.getByRole("button", { name: "Complete Registration" }).click();
  await page.waitForURL(`${base}/login?registered=1`);
  await page.getByText("Your registration is complete").waitFor();

  // Log in with email, password and date of birth.
  await logIn(page, patient.email, password, patient.birthDate);
  await page.getByRole("heading", { name: "Health", exact: true }).waitFor();
  await page.getByText(patient.name, { exact: true }).waitFor();

  // Log out from the menu under the name in the upper-right corner.
  await page.getByText(patient.name, { exact: true }).click();
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByText("You have logged out.").waitFor();
  await page.goto(`${base}/`);
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  console.log("registration walk passed");
} finally {
  await browser.close();
}
