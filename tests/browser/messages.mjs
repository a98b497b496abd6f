// Messages in Chromium, as the patient and the care team use them: the patient opens the inbox, reads a
// message from the care team (its HTML shown as text, never run), replies once (no Reply button after),
// composes an "Rx question" (an empty form first: a message next to each field); the care team's page shows
// both, unread. axe-core checks each page; screenshots at desktop and phone width.
// Run by tests/api/browser.rs, which starts the server, has the care team write first and passes the details.
import assert from "node:assert/strict";
import { check, env, launch, logIn } from "./common.mjs";

const base = env("BASE_URL");
const subject = env("SUBJECT");
const browser = await launch();

try {
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("dialog", () => assert.fail("a message ran script"));
  await page.goto(`${base}/login`);
  await logIn(page, env("PATIENT_EMAIL"), env("PATIENT_PASSWORD"), env("PATIENT_BIRTH_DATE"));
  await page.getByRole("heading", { name: "Health", exact: true }).waitFor();

  // Inbox: the message, unread.
  await page.getByRole("link", { name: "Messages", exact: true }).click();
  await page.getByRole("heading", { name: "Messages", exact: true }).waitFor();
  const row = page.locator("table.messages tbody tr", { hasText: subject });
  assert.ok((await row.textContent()).includes("Unread"));
  await check(page, "messages");

  // Read it: the script is text on the page.
  await row.getByRole("link").click();
  await page.getByRole("heading", { name: subject, level: 1 }).waitFor();
  await page.getByText("<script>alert('x')</script> The scan looks normal.").waitFor();
  await check(page, "message");

  // Reply once; then there is no Reply button.
  await page.getByLabel(`Your reply to “${subject}”`).fill("Thank you, that is a relief.");
  await page.getByRole("button", { name: "Send reply" }).click();
  await page.getByText("Thank you, that is a relief.").waitFor();
  assert.equal(await page.getByRole("button", { name: "Send reply" }).count(), 0);
  await page.getByText("You have answered this conversation.").waitFor();

  // Compose: every field is required, then an Rx question goes out.
  await page.getByRole("link", { name: "Messages", exact: true }).click();
  await page.getByRole("link", { name: "Compose" }).click();
  await page.getByRole("heading", { name: "New message" }).waitFor();
  await page.getByRole("button", { name: "Send" }).click();
  for (const text of ["Choose what your message is about.", "Enter a subject.", "Enter your message."]) {
    await page.getByText(text).waitFor();
  }
  await check(page, "compose");
  await page.getByLabel("Category").selectOption({ label: "Rx question" });
  await page.getByLabel("Subject").fill("Refill of lisinopril");
  await page.getByLabel("Message").fill("My prescription runs out on Friday.");
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByRole("heading", { name: "Refill of lisinopril", level: 1 }).waitFor();
  await page.getByRole("link", { name: "Messages", exact: true }).click();
  await page.getByRole("link", { name: "Sent", exact: true }).click();
  await page.getByRole("link", { name: "Refill of lisinopril" }).waitFor();
  await check(page, "messages-sent");

  // The care team's page shows both, unread.
  const staff = await (await browser.newContext({ bypassCSP: true })).newPage();
  await staff.goto(`${base}/staff/login`);
  await logIn(staff, env("STAFF_EMAIL"), env("STAFF_PASSWORD"));
  await staff.getByRole("link", { name: "Patient messages" }).click();
  const unread = staff.locator("section", { has: staff.getByRole("heading", { name: /^Unread/ }) });
  await unread.getByRole("link", { name: /Refill of lisinopril/ }).waitFor();
  await unread.getByRole("link", { name: new RegExp(`Re: ${subject}`) }).waitFor();
  await check(staff, "staff-messages");
  await unread.getByRole("link", { name: /Refill of lisinopril/ }).click();
  await staff.getByText("My prescription runs out on Friday.").waitFor();
  await check(staff, "staff-message");
  console.log("messages walk passed");
} finally {
  await browser.close();
}
