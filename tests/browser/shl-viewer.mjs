// The SMART Health Link viewer in Chromium, as a provider without an EHR uses it: the link from the email, a
// wrong password (told how many attempts are left), then the right one: the records, decrypted in the page.
import assert from "node:assert/strict";
import { check, env, launch } from "./common.mjs";

const browser = await launch();
try {
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(env("VIEWER_URL"));
  await page.getByRole("heading", { name: "Shared health records" }).waitFor();
  await page.getByLabel("Your name or organization").fill("Dr. Lee, Lakeside Clinic");
  await page.getByLabel("Password").fill("Not-The-Password-1!");
  await page.getByRole("button", { name: "Open records" }).click();
  await page.getByText("The password is not correct. Attempts left: 9.").waitFor();
  await page.getByLabel("Password").fill(env("PASSCODE"));
  await page.getByRole("button", { name: "Open records" }).click();
  await page.getByText("Records opened.").waitFor();
  await page.getByText(env("EXPECTED_TEXT")).first().waitFor();
  assert.equal(await page.getByRole("button", { name: "Open records" }).count(), 0);
  await check(page, "shl-viewer");
  console.log("shl viewer walk passed");
} finally {
  await browser.close();
}
