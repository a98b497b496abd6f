//! Sign-ins for the demo practice (`carespace serve --demo`): a care-team account for the first practitioner,
//! registered accounts for all patients but the last, and a pending invitation (in the outbox) for the last,
//! so the registration walk can be tried; and a family member with access to the first two patients' records
//! (to try choosing and switching). One published password: demo data only.

use super::{Accounts, password};
use crate::access::Actor;
use crate::error::{Error, Result};
use crate::store::AccountKey;
use crate::store::accounts::{Account, AccountKind};

pub const DEMO_PASSWORD: &str = "Demo-Portal-2026!";

/// The demo family member: email, birth date, name.
const FAMILY: (&str, &str, &str) = ("david.nguyen@example.com", "1966-07-19", "David Nguyen");

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
            let resource = self.records.read(&actor, rtype, id).await?.json()?;
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
        if let [first, second, ..] = patients.as_slice() {
            logins.push(self.demo_family(&[first.as_str(), second.as_str()]).await?);
        }
        Ok(logins)
    }

    /// The family member, granted access by each of `patients` (as they would in Manage Users), registered.
    async fn demo_family(&self, patients: &[&str]) -> Result<DemoLogin> {
        let (email, birth_date, name) = FAMILY;
        if self.store.account(AccountKey::Email(email)).await?.is_none() {
            for (person, relationship) in patients.iter().zip(["SPS", "FRND"]) {
                let new = super::proxies::NewProxy {
                    email,
                    birth_date,
                    name,
                    relationship,
                };
                self.grant_access(person.trim_start_matches("Patient/"), &new, "demo")
                    .await?;
                let mut account = self
                    .store
                    .account(AccountKey::Email(email))
                    .await?
                    .ok_or_else(|| Error::Store("the demo family account was not made".into()))?;
                if account.registered.is_none() {
                    account.password_hash = Some(password::hash(DEMO_PASSWORD)?);
                    account.registered = Some(self.clock.now_millis());
                    self.store.save_account(&account).await?;
                }
                self.accept_grants(&account, "demo").await?;
            }
        }
        Ok(DemoLogin {
            kind: AccountKind::Proxy,
            email: email.to_owned(),
            birth_date: Some(birth_date.to_owned()),
            name: format!("{name}, with access to two patients' records"),
            registered: true,
        })
    }
}
