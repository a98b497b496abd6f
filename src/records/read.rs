//! The read side: read, vread, history, search (with `_include`/`_revinclude`) and `$everything`, all
//! through the gate and audited.

use serde_json::Value;

use super::{Found, Records, Stored, bundle, not_found};
use crate::access::{self, Action, Actor, Grant};
use crate::clock;
use crate::error::{Error, Issue, Result};
use crate::fhir::search::{self, SearchRequest};
use crate::fhir::{datetime, extract};
use crate::store::{CompartmentFilter, HistoryQuery};

impl Records {
    /// `_count`, capped at the configured maximum.
    fn count(&self, k: &str, v: &str) -> Result<i64> {
        Ok(v.parse::<i64>()
            .map_err(|_| bad_param(k, v))?
            .clamp(0, self.limits.max_count))
    }

    pub async fn read(&self, actor: &Actor, rtype: &str, id: &str) -> Result<Stored> {
        let grant = self.authorize(actor, Action::Read, rtype)?;
        self.settle_audit(Some(rtype)).await?;
        let row = self
            .store
            .read(&grant, rtype, id)
            .await?
            .ok_or_else(|| not_found(rtype, id))?;
        let stored = Self::to_stored(row)?;
        self.audit_read(&grant, "read", std::slice::from_ref(&stored), None)
            .await?;
        Ok(stored)
    }

    pub async fn vread(&self, actor: &Actor, rtype: &str, id: &str, version: i64) -> Result<Stored> {
        let grant = self.authorize(actor, Action::Read, rtype)?;
        self.settle_audit(Some(rtype)).await?;
        let row = self
            .store
            .vread(&grant, rtype, id, version)
            .await?
            .ok_or_else(|| not_found(rtype, &format!("{id}/_history/{version}")))?;
        let stored = Self::to_stored(row)?;
        self.audit_read(&grant, "vread", std::slice::from_ref(&stored), None)
            .await?;
        Ok(stored)
    }

    pub async fn history(
        &self,
        actor: &Actor,
        rtype: Option<&str>,
        id: Option<&str>,
        params: &[(String, String)],
    ) -> Result<String> {
        let grant = self.authorize(actor, Action::Read, rtype.unwrap_or("*"))?;
        self.settle_audit(rtype).await?;
        let mut query = HistoryQuery {
            rtype: rtype.map(str::to_owned),
            id: id.map(str::to_owned),
            since: None,
            count: self.limits.default_count,
            offset: 0,
        };
        for (k, v) in params {
            match k.as_str() {
                "_since" => query.since = Some(since(k, v)?),
                "_count" => query.count = self.count(k, v)?,
                "_offset" => query.offset = offset(k, v)?,
                _ => {}
            }
        }
        let (rows, total) = self.store.history(&grant, &query).await?;
        // An instance with no versions in range is an empty history; one that never existed (for this grant) is 404.
        if let (Some(rtype), Some(id), true) = (rtype, id, total == 0)
            && self.store.read(&grant, rtype, id).await?.is_none()
        {
            return Err(not_found(rtype, id));
        }
        let stored: Vec<Stored> = rows.iter().filter_map(|r| Self::to_stored(r.clone()).ok()).collect();
        self.audit_read(
            &grant,
            if id.is_some() {
                "history-instance"
            } else {
                "history-type"
            },
            &stored,
            None,
        )
        .await?;
        let path = match (rtype, id) {
            (Some(t), Some(i)) => format!("{t}/{i}/_history"),
            (Some(t), None) => format!("{t}/_history"),
            _ => "_history".to_owned(),
        };
        let used: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "_offset").cloned().collect();
        let page = bundle::Page {
            path,
            params: &used,
            total: Some(total),
            count: query.count,
            offset: query.offset,
        };
        Ok(bundle::history(&self.base, &page, &rows))
    }

    /// A search, as a Bundle; `strict` refuses parameters the server would otherwise ignore (`Prefer:
    /// handling=strict`).
    pub async fn search(
        &self,
        actor: &Actor,
        rtype: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<String> {
        let (req, found) = self.searched(actor, rtype, params, strict).await?;
        Ok(bundle::searchset(
            &self.base,
            rtype,
            &req,
            &found.matches,
            &found.included,
            found.total,
        ))
    }

    /// A search's findings as stored, for the portal, which reads the resources itself: writing them into a
    /// Bundle only to parse it again was a third of a Health page's time (docs/benchmarks.md). Summary
    /// parameters (`_elements`, `_summary`) shape Bundles only, so they change nothing here.
    pub async fn find(&self, actor: &Actor, rtype: &str, params: &[(String, String)]) -> Result<Found> {
        Ok(self.searched(actor, rtype, params, false).await?.1)
    }

    async fn searched(
        &self,
        actor: &Actor,
        rtype: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<(SearchRequest, Found)> {
        let req = search::parse(
            rtype,
            params,
            &self.registry,
            self.limits,
            &self.base,
            self.clock.now_millis(),
        )?;
        if strict && !req.ignored.is_empty() {
            return Err(Error::Invalid(
                req.ignored
                    .iter()
                    .map(|w| Issue::new("not-supported", w.clone()))
                    .collect(),
            ));
        }
        let grant = self.authorize(actor, Action::Search, rtype)?;
        self.settle_audit(Some(rtype)).await?;
        let found = self.run_search(&grant, rtype, &req).await?;
        Ok((req, found))
    }

    /// A grant when the gate allows, `None` when it refuses (for optional parts of an answer).
    fn optional_grant(&self, actor: &Actor, action: Action, rtype: &str) -> Result<Option<Grant>> {
        match self.authorize(actor, action, rtype) {
            Ok(g) => Ok(Some(g)),
            Err(Error::Forbidden(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn run_search(&self, grant: &Grant, rtype: &str, req: &SearchRequest) -> Result<Found> {
        let (rows, total) = self.store.search(grant, &req.query).await?;
        let matches: Vec<Stored> = rows.into_iter().map(Self::to_stored).collect::<Result<_>>()?;
        let mut included = Vec::new();
        for inc in &req.includes {
            let mut refs = Vec::new();
            for m in &matches {
                let Ok(v) = serde_json::from_str::<Value>(&m.body) else {
                    continue;
                };
                for e in extract::index(&self.registry, rtype, &v, &self.base) {
                    if let (true, crate::store::IndexValue::Reference { target }) = (e.param == inc.param, &e.value)
                        && let Some((t, i)) = target
                            .split_once('/')
                            .filter(|(t, _)| inc.target.as_deref().is_none_or(|want| want == *t))
                        && !i.contains('/')
                        && crate::fhir::types::is_supported(t)
                    {
                        refs.push((t.to_owned(), i.to_owned()));
                    }
                }
            }
            refs.sort();
            refs.dedup();
            // Each included type goes through the gate on its own: a token that may search one type does not
            // reach another through `_include` (types it may not read are left out, as FHIR allows).
            let mut types: Vec<&str> = refs.iter().map(|(t, _)| t.as_str()).collect();
            types.dedup();
            for t in types {
                let Some(type_grant) = self.optional_grant(grant.actor(), Action::Read, t)? else {
                    continue;
                };
                let of_type: Vec<(String, String)> = refs.iter().filter(|(rt, _)| rt == t).cloned().collect();
                included.extend(
                    self.store
                        .read_many(&type_grant, &of_type)
                        .await?
                        .into_iter()
                        .filter_map(|r| Self::to_stored(r).ok()),
                );
            }
        }
        for rev in &req.revincludes {
            let Some(source_grant) = self.optional_grant(grant.actor(), Action::Search, &rev.source)? else {
                continue;
            };
            let targets: Vec<String> = matches.iter().map(|m| format!("{}/{}", m.rtype, m.id)).collect();
            let rows = self
                .store
                .referencing(&source_grant, &rev.source, &rev.param, &targets, self.limits.max_count)
                .await?;
            included.extend(rows.into_iter().filter_map(|r| Self::to_stored(r).ok()));
        }
        let query_text = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&req.used)
            .finish();
        self.audit_read(grant, "search-type", matches.iter().chain(&included), Some(&query_text))
            .await?;
        Ok(Found {
            matches,
            included,
            total,
        })
    }

    /// `Patient/{id}/$everything`: the patient's whole compartment, paged.
    pub async fn everything(&self, actor: &Actor, patient: &str, params: &[(String, String)]) -> Result<String> {
        let grant = self.authorize(actor, Action::Read, "Patient")?;
        let row = self
            .store
            .read(&grant, "Patient", patient)
            .await?
            .ok_or_else(|| not_found("Patient", patient))?;
        Self::to_stored(row)?; // a deleted patient answers 410
        let mut filter = CompartmentFilter {
            count: self.limits.max_count,
            exclude: vec!["AuditEvent".into()],
            ..CompartmentFilter::default()
        };
        let (mut start, mut end) = (None, None);
        for (k, v) in params {
            match k.as_str() {
                "_since" => filter.since = Some(since(k, v)?),
                "_type" => filter.types = v.split(',').map(str::to_owned).collect(),
                "_count" => filter.count = self.count(k, v)?.max(1),
                "_offset" => filter.offset = offset(k, v)?,
                "start" => start = Some(date_range(k, v)?.0),
                "end" => end = Some(date_range(k, v)?.1),
                _ => {}
            }
        }
        if start.is_some() || end.is_some() {
            filter.clinical = Some((start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)));
        }
        // An app gets the types its scopes let it read, nothing more.
        if let Some(readable) = access::readable_types(actor) {
            filter.types = if filter.types.is_empty() {
                readable
            } else {
                filter.types.into_iter().filter(|t| readable.contains(t)).collect()
            };
            if filter.types.is_empty() {
                filter.types = vec!["Patient".into()];
            }
        }
        let (rows, total) = self.store.compartment(&grant, patient, &filter).await?;
        let stored: Vec<Stored> = rows.into_iter().map(Self::to_stored).collect::<Result<_>>()?;
        // Plus what the page refers to that belongs to no patient (who treated them, where, with what).
        let mut refs: Vec<(String, String)> = stored
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
            .flat_map(|v| extract::references(&v, &self.base))
            .filter(|(t, _)| access::DIRECTORY_TYPES.contains(&t.as_str()))
            .collect();
        refs.sort();
        refs.dedup();
        let mut referenced: Vec<Stored> = Vec::new();
        for t in access::DIRECTORY_TYPES {
            let of_type: Vec<(String, String)> = refs.iter().filter(|(rt, _)| rt == t).cloned().collect();
            if of_type.is_empty() {
                continue;
            }
            let Some(type_grant) = self.optional_grant(actor, Action::Read, t)? else {
                continue;
            };
            for row in self.store.read_many(&type_grant, &of_type).await? {
                referenced.push(Self::to_stored(row)?);
            }
        }
        let query = form_urlencoded::Serializer::new(format!("Patient/{patient}/$everything?"))
            .extend_pairs(params)
            .finish();
        self.audit_read(&grant, "operation", stored.iter().chain(&referenced), Some(&query))
            .await?;
        let used: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "_offset").cloned().collect();
        let page = bundle::Page {
            path: format!("Patient/{patient}/$everything"),
            params: &used,
            total: Some(total),
            count: filter.count,
            offset: filter.offset,
        };
        Ok(bundle::everything(&self.base, &page, &stored, &referenced))
    }
}

/// `_since`: an instant (or, leniently, a date) as epoch milliseconds.
fn since(k: &str, v: &str) -> Result<i64> {
    clock::parse_rfc3339(v)
        .or_else(|| datetime::range(v).map(|r| r.0))
        .ok_or_else(|| bad_param(k, v))
}

fn offset(k: &str, v: &str) -> Result<i64> {
    search::offset(v).ok_or_else(|| bad_param(k, v))
}

fn date_range(k: &str, v: &str) -> Result<(i64, i64)> {
    datetime::range(v).ok_or_else(|| bad_param(k, v))
}

fn bad_param(k: &str, v: &str) -> Error {
    Error::invalid(Issue::new("processing", format!("parameter {k}: invalid value '{v}'")))
}
