//! Writing the audit trail of what `Records` did: one AuditEvent per patient touched, naming only their
//! resources, plus one for the practice when several patients were touched.

use serde_json::{Value, json};

use super::{Records, Stored};
use crate::access::{Grant, audit};
use crate::clock;
use crate::error::{Error, Result};
use crate::fhir::extract;
use crate::store::VersionWrite;

impl Records {
    /// The AuditEvent write for an access to `what` in `patients`' compartments.
    fn audit_write(
        &self,
        grant: &Grant,
        interaction: &'static str,
        what: &[String],
        patients: &[String],
        query: Option<&str>,
    ) -> Result<VersionWrite> {
        let now = self.clock.now_millis();
        let recorded = clock::instant(now);
        let event = audit::event(&audit::Access {
            grant,
            interaction,
            what,
            patients,
            query,
            recorded: &recorded,
        });
        let mut write = self.event_write(event, now, &recorded)?;
        // A write of many resources (a transaction) names each in the event but is found by its patient,
        // agent, date and query rather than by each resource: an index row per resource made imports slow
        // (docs/benchmarks.md). `entity=` finds the reads, single writes and single-result searches of one.
        if what.len() > 1 {
            write.index.retain(|e| e.param != "entity");
        }
        Ok(write)
    }

    /// An AuditEvent as a new resource version.
    fn event_write(&self, event: Value, now: i64, recorded: &str) -> Result<VersionWrite> {
        let id = super::new_id();
        let index = extract::index(&self.registry, "AuditEvent", &event, &self.base);
        let compartments = extract::compartments("AuditEvent", &id, &index);
        let Value::Object(members) = event else {
            return Err(Error::Store("an AuditEvent is built as a JSON object".into()));
        };
        // Written out as `RawObject::stamped` writes a stored resource (type, id and meta first), but from the
        // event itself: going through raw members was a twentieth of a read (docs/benchmarks.md).
        let meta = json!({ "versionId": "1", "lastUpdated": recorded });
        let mut body = format!(
            r#"{{"resourceType":"AuditEvent","id":{},"meta":{meta}"#,
            Value::from(id.as_str())
        );
        for (name, value) in members
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "resourceType" | "id" | "meta"))
        {
            body.push(',');
            body.push_str(&Value::from(name.as_str()).to_string());
            body.push(':');
            body.push_str(&value.to_string());
        }
        body.push('}');
        Ok(VersionWrite {
            rtype: "AuditEvent".into(),
            body: Some(body),
            id,
            prev_version: None,
            version: 1,
            last_updated: now,
            index,
            compartments,
            ends_access: false,
        })
    }

    /// Records a refused request (without waiting: see [`AuditSink::record_soon`]).
    ///
    /// [`AuditSink::record_soon`]: super::audit_sink::AuditSink::record_soon
    pub(super) fn audit_refusal(
        &self,
        actor: &crate::access::Actor,
        action: crate::access::Action,
        rtype: &str,
        reason: &str,
    ) {
        let now = self.clock.now_millis();
        let recorded = clock::instant(now);
        let event = audit::refusal(actor, action, rtype, reason, &recorded);
        match self.event_write(event, now, &recorded) {
            Ok(write) => self.audit.record_soon(write),
            Err(e) => tracing::warn!(error = %e, "a refusal could not be recorded"),
        }
    }

    /// Records an account action (sign-in, invitation, ...) in the audit trail; returns when it is durable.
    pub async fn audit_account(&self, event: &audit::AccountEvent<'_>) -> Result<()> {
        let now = self.clock.now_millis();
        let recorded = clock::instant(now);
        let write = self.event_write(
            audit::account_event(&audit::AccountEvent {
                recorded: &recorded,
                ..*event
            }),
            now,
            &recorded,
        )?;
        self.audit.record(vec![write]).await
    }

    /// Returns once every audit record made before is in the database (reads' records are journaled first on
    /// SQLite: see [`AuditSink`](super::audit_sink::AuditSink)).
    pub async fn flush_audit(&self) -> Result<()> {
        self.audit.flush().await
    }

    /// Before a read of the audit trail itself (or of every type), so it shows every access made before.
    pub(super) async fn settle_audit(&self, rtype: Option<&str>) -> Result<()> {
        if rtype.is_none_or(|t| t == "AuditEvent") {
            self.audit.flush().await?;
        }
        Ok(())
    }

    /// Records a read-side access (after the data was fetched; a failed audit fails the request).
    pub(super) async fn audit_read<'a>(
        &self,
        grant: &Grant,
        interaction: &'static str,
        rows: impl IntoIterator<Item = &'a Stored>,
        query: Option<&str>,
    ) -> Result<()> {
        let touched = self.touched(grant, rows);
        let writes = self.audit_writes(grant, interaction, &touched, query)?;
        self.audit.record(writes).await
    }

    /// Each row as `Type/id` with the patients whose data it is (within the grant's patients, if limited).
    pub(super) fn touched<'a>(
        &self,
        grant: &Grant,
        rows: impl IntoIterator<Item = &'a Stored>,
    ) -> Vec<(String, Vec<String>)> {
        rows.into_iter()
            .map(|r| {
                let mut patients = match &r.owners {
                    Some(owners) => owners.clone(),
                    None => serde_json::from_str::<Value>(&r.body)
                        .map(|v| extract::owners(&self.registry, &r.rtype, &r.id, &v, &self.base))
                        .unwrap_or_default(),
                };
                if let Some(mine) = grant.patients() {
                    patients.retain(|p| mine.contains(p));
                }
                (format!("{}/{}", r.rtype, r.id), patients)
            })
            .collect()
    }

    /// The AuditEvents for one access. Each patient gets an event naming only their own resources, so no
    /// patient's audit trail shows another's data; when several patients were touched, one more event without
    /// a patient (for the practice) holds the query and the non-Patient resources.
    pub(super) fn audit_writes(
        &self,
        grant: &Grant,
        interaction: &'static str,
        touched: &[(String, Vec<String>)],
        query: Option<&str>,
    ) -> Result<Vec<VersionWrite>> {
        let mut patients: Vec<&String> = touched.iter().flat_map(|(_, p)| p).collect();
        patients.sort();
        patients.dedup();
        let all: Vec<String> = touched.iter().map(|(r, _)| r.clone()).collect();
        if patients.len() <= 1 {
            let patients: Vec<String> = patients.into_iter().cloned().collect();
            return Ok(vec![self.audit_write(grant, interaction, &all, &patients, query)?]);
        }
        let mut writes = Vec::with_capacity(patients.len() + 1);
        for p in &patients {
            let theirs: Vec<String> = touched
                .iter()
                .filter(|(_, ps)| ps.contains(p))
                .map(|(r, _)| r.clone())
                .collect();
            writes.push(self.audit_write(grant, interaction, &theirs, std::slice::from_ref(p), None)?);
        }
        let practice: Vec<String> = all.into_iter().filter(|r| !r.starts_with("Patient/")).collect();
        writes.push(self.audit_write(grant, interaction, &practice, &[], query)?);
        Ok(writes)
    }
}
