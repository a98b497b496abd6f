//! Sign-ins for the demo practice (`carespace serve --demo`): a care-team account for the first practitioner,
//! registered accounts for all patients but the last, and a pending invitation (in the outbox) for the last,
//! so the registration walk can be tried. One published password: demo data only.

use serde_json::Value;

use super::{Accounts, password};
use crate::access::Actor;
use crate::error::{Error, Result};
use crate::store::AccountKey;
use crate::store::accounts::{Account, AccountKind};

pub const DEMO_PASSWORD: &str = "Demo-Portal-2026!";

/// One demo sign-in to print.
pub struct DemoLogin {
    pub kind: AccountKind,
    pub email: String,
    pub birth_date: Option<String>,
    pub name: String,
    /// `false`: invited, registration link in the outbox.
    pub registered: bool,
}

impl Accounts {
    /// Creates the demo accounts that do not exist yet (idempotent) and lists them all.
    pub async fn demo(&self, people: &[String]) -> Result<Vec<DemoLogin>> {
        let actor = Actor::system("demo");
        let patients: Vec<&String> = people.iter().filter(|p| p.starts_with("Patient/")).collect();
        let staff = people.iter().find(|p| p.starts_with("Practitioner/"));
        let mut logins = Vec::new();
        for person in staff.into_iter().chain(patients.iter().copied()) {
            let (rtype, id) = person.split_once('/').unwrap_or_default();
            let resource: Value = serde_json::from_str(&self.records.read(&actor, rtype, id).await?.body)
                .map_err(|e| Error::Store(e.to_string()))?;
            let email = resource["telecom"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["system"] == "email")
                .and_then(|t| t["value"].as_str())
                .ok_or_else(|| Error::Store(format!("demo {person} has no email")))?
                .to_lowercase();
            let last_patient = patients.last().is_some_and(|p| *p == person);
            let account = match self.store.account(AccountKey::Person(person)).await? {
                Some(a) => a,
                None if last_patient => self.invite(&actor, id, &email, None).await?,
                None => {
                    let now = self.clock.now_millis();
                    let account = Account {
                        id: uuid::Uuid::new_v4().to_string(),
                        email,
                        kind: if rtype == "Patient" {
                            AccountKind::Patient
                        } else {
                            AccountKind::Staff
                        },
                        person: person.clone(),
                        display_name: crate::fhir::display_name(&resource),
                        birth_date: resource["birthDate"].as_str().map(str::to_owned),
                        password_hash: Some(password::hash(DEMO_PASSWORD)?),
                        created: now,
                        registered: Some(now),
                    };
                    self.store.save_account(&account).await?;
                    account
                }
            };
            logins.push(DemoLogin {
                kind: account.kind,
                email: account.email,
                birth_date: account.birth_date,
                name: account.display_name,
                registered: account.registered.is_some(),
            });
        }
        Ok(logins)
    }
}
