// The SMART Health Link viewer: the key is in the address's fragment (never sent to any server); the person
// types the password, the manifest is fetched, and the file is decrypted and shown here, in the browser.
"use strict";
const b64u = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
const $ = (id) => document.getElementById(id);
const say = (text) => { $("shl-status").textContent = text; };

async function decrypt(jwe, keyBytes) {
  const [header, , iv, ciphertext, tag] = jwe.split(".");
  const key = await crypto.subtle.importKey("raw", keyBytes, "AES-GCM", false, ["decrypt"]);
  const sealed = new Uint8Array([...b64u(ciphertext), ...b64u(tag)]);
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: b64u(iv), additionalData: new TextEncoder().encode(header) }, key, sealed);
  return JSON.parse(new TextDecoder().decode(plain));
}

const text = (c) => (c && (c.text || (c.coding && c.coding[0] && (c.coding[0].display || c.coding[0].code)))) || "";
function value(r) {
  if (r.valueQuantity) return `${r.valueQuantity.value} ${r.valueQuantity.unit || r.valueQuantity.code || ""}`.trim();
  if (r.valueString) return r.valueString;
  if (r.valueCodeableConcept) return text(r.valueCodeableConcept);
  return "";
}
const when = (r) => (r.effectiveDateTime || r.issued || r.date || r.authoredOn || r.onsetDateTime || r.recordedDate || (r.period && r.period.start) || r.sent || "").slice(0, 10);
function line(r) {
  switch (r.resourceType) {
    case "Patient": {
      const n = (r.name && r.name[0]) || {};
      return `${n.text || [...(n.given || []), n.family || ""].join(" ").trim()}, born ${r.birthDate || "?"}`;
    }
    case "Observation": return `${when(r)}  ${text(r.code)}: ${value(r)}`;
    case "DocumentReference": return `${when(r)}  ${text(r.type)}: ${(r.content && r.content[0] && r.content[0].attachment.title) || ""}`;
    default: return `${when(r)}  ${text(r.code) || text(r.type) || r.resourceType}`.trim();
  }
}

function show(bundle) {
  const groups = new Map();
  for (const e of bundle.entry || []) {
    const r = e.resource;
    if (!r || r.resourceType === "Binary") continue;
    if (!groups.has(r.resourceType)) groups.set(r.resourceType, []);
    groups.get(r.resourceType).push(r);
  }
  const out = $("shl-records");
  out.replaceChildren();
  for (const [type, list] of groups) {
    const h = document.createElement("h2");
    h.textContent = `${type} (${list.length})`;
    const ul = document.createElement("ul");
    for (const r of list) {
      const li = document.createElement("li");
      li.textContent = line(r);
      ul.append(li);
    }
    out.append(h, ul);
  }
  out.hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const form = $("shl-unlock");
  if (!form) return;
  const at = location.hash.indexOf("shlink:/");
  let link;
  try {
    link = JSON.parse(new TextDecoder().decode(b64u(location.hash.slice(at + 8))));
  } catch {
    link = null;
  }
  if (at < 0 || !link || !link.url || !link.key) {
    form.hidden = true;
    say("This address does not hold a SMART Health Link.");
    return;
  }
  $("shl-label").textContent = link.label || "";
  if (link.exp && link.exp * 1000 < Date.now()) say("This link has expired.");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say("Opening…");
    try {
      const answer = await fetch(link.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ recipient: $("shl-recipient").value, passcode: $("shl-passcode").value }),
      });
      if (answer.status === 401) {
        const body = await answer.json();
        say(`The password is not correct. Attempts left: ${body.remainingAttempts}.`);
        return;
      }
      if (!answer.ok) {
        say(answer.status === 400 ? "Enter your name or organization." : "This link is no longer active.");
        return;
      }
      const file = (await answer.json()).files[0];
      const jwe = file.embedded || (await (await fetch(file.location)).text());
      show(await decrypt(jwe, b64u(link.key)));
      form.hidden = true;
      say("Records opened.");
    } catch (e) {
      say(`The records could not be opened: ${e.message}`);
    }
  });
});
