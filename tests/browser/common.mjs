// What every browser walk shares: its settings from the environment, Debian's Chromium, logging in by the
// visible labels, and the page check (axe-core finds no violations, nothing scrolls sideways at phone width,
// screenshots at desktop and phone width into SCREENSHOT_DIR).
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

export const launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });

/// Fills the login form on the current page (a patient's when `birthDate` is given) and submits it.
export async function logIn(page, email, password, birthDate) {
  await page.getByLabel("Email address").fill(email);
  await page.getByLabel("Password").fill(password);
  if (birthDate) await page.getByLabel("Date of birth").fill(birthDate);
  await page.getByRole("button", { name: "Log in" }).click();
}

let axeSource;

/// No axe violations on the current page, then screenshots at desktop and phone width (no sideways scrolling).
/// The page's context must bypass CSP: our policy allows no injected script, and axe is injected.
export async function check(page, name) {
  const shots = env("SCREENSHOT_DIR");
  mkdirSync(shots, { recursive: true });
  axeSource ??= readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");
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
