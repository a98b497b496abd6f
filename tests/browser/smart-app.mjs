// A SMART app built on the unmodified SMART JS client (npm fhirclient), served from its own origin, does a
// standalone launch against CareSpace in Chromium: discovery, PKCE, the portal login and consent page (filled
// in by label, as a patient would), the code exchange, then reads the patient's Observations.
// Run by tests/api/browser.rs, which starts the server, registers the app and passes the details.
import http from "node:http";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { env, launch, logIn } from "./common.mjs";

const base = env("BASE_URL");
const appPort = Number(env("APP_PORT"));
const clientId = env("CLIENT_ID");
const bundle = readFileSync(new URL("./node_modules/fhirclient/build/fhir-client.min.js", import.meta.url));
const pages = {
  "/launch.html": `<!doctype html><title>Launch</title><script src="/fhir-client.js"></script>
<script>FHIR.oauth2.authorize({ clientId: ${JSON.stringify(clientId)}, scope: "launch/patient openid fhirUser patient/*.rs",
  iss: ${JSON.stringify(base + "/fhir")}, redirectUri: "/index.html" });</script>`,
  "/index.html": `<!doctype html><title>App</title><pre id="out">waiting</pre><script src="/fhir-client.js"></script>
<script>FHIR.oauth2.ready().then(async (client) => {
  const found = await client.request("Observation?patient=" + client.patient.id);
  const patient = await client.patient.read();
  const codes = (found.entry || []).map((e) => e.resource.code.text).sort().join(",");
  document.getElementById("out").textContent = "patient " + patient.id + " observations " + codes;
}).catch((e) => { document.getElementById("out").textContent = "error " + e; });</script>`,
};
const server = http.createServer((req, res) => {
  const path = req.url.split("?")[0];
  if (path === "/fhir-client.js") {
    res.writeHead(200, { "content-type": "text/javascript" }).end(bundle);
  } else if (pages[path]) {
    res.writeHead(200, { "content-type": "text/html" }).end(pages[path]);
  } else {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(appPort, "127.0.0.1", r));

const browser = await launch();
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`http://127.0.0.1:${appPort}/launch.html`);
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await logIn(page, env("PATIENT_EMAIL"), env("PATIENT_PASSWORD"), env("PATIENT_BIRTH_DATE"));
  await page.getByRole("heading", { name: /use your record\?/ }).waitFor();
  await page.getByRole("button", { name: "Allow" }).click();
  await page.waitForURL(`http://127.0.0.1:${appPort}/index.html*`);
  await page.locator("#out").filter({ hasNotText: "waiting" }).waitFor();
  const out = await page.locator("#out").textContent();
  assert.equal(out, `patient ${env("PATIENT_ID")} observations ${env("EXPECTED_OBSERVATIONS")}`);
  console.log("smart app walk passed");
} finally {
  await browser.close();
  server.close();
}
