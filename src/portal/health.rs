//! `/` — the Health tab: the latest result of each lab test (grouped by panel, each with its history and a
//! trend chart), and the six newest documents. Staff go to their page, visitors to the login page.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::Visitor;
use super::render::{self, Chrome};
use crate::AppState;
use crate::access::Actor;
use crate::health::{self, DocumentSummary, LabResult, LabTest};
use crate::store::accounts::AccountKind;

/// The actor for the record open in the session (the patient's own, or one granted to them) and that
/// patient's id, or where to go instead (boxed: a response is large).
pub fn patient(visitor: &Visitor, here: &str) -> Result<(Actor, String), Box<Response>> {
    let to_login = || {
        let to = if here == "/" {
            "/login".to_owned()
        } else {
            let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
            format!("/login?next={next}")
        };
        Box::new(Redirect::to(&to).into_response())
    };
    let Some(s) = &visitor.signed_in else {
        return Err(to_login());
    };
    if s.account.kind == AccountKind::Staff {
        return Err(Box::new(Redirect::to("/staff").into_response()));
    }
    if !s.has_record() {
        return Err(Box::new(Redirect::to("/records").into_response()));
    }
    match s.actor() {
        Ok(actor) => match actor.record_patient().map(str::to_owned) {
            Some(patient) => Ok((actor, patient)),
            None => Err(to_login()),
        },
        Err(e) => Err(Box::new(render::failure(&e))),
    }
}

/// A small line chart of a test's numeric results, oldest to newest, with the reference range shaded.
fn trend(test: &LabTest) -> Markup {
    let points: Vec<(&LabResult, f64)> = test
        .results
        .iter()
        .rev()
        .filter_map(|r| r.number.map(|n| (r, n)))
        .collect();
    if points.len() < 2 {
        return html! {};
    }
    let (w, h, pad) = (320.0, 120.0, 24.0);
    let low = test.results[0].low;
    let high = test.results[0].high;
    let mut min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if let Some(l) = low {
        min = min.min(l);
    }
    if let Some(hh) = high {
        max = max.max(hh);
    }
    if (max - min).abs() < f64::EPSILON {
        max = min + 1.0;
    }
    let y = |v: f64| pad + (h - 2.0 * pad) * (1.0 - (v - min) / (max - min));
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (points.len() - 1) as f64;
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.1)))
        .collect();
    let described = format!(
        "{}: {} results from {} to {}, latest {}",
        test.name,
        points.len(),
        points[0].0.date,
        points[points.len() - 1].0.date,
        points[points.len() - 1].0.value
    );
    html! {
        svg.trend viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(described) {
            @if let (Some(l), Some(hh)) = (low, high) {
                rect.band x=(pad) y=(format!("{:.1}", y(hh))) width=(w - 2.0 * pad) height=(format!("{:.1}", (y(l) - y(hh)).max(0.0))) {}
            }
            polyline.line points=(line.join(" ")) {}
            @for (i, p) in points.iter().enumerate() {
                circle.point cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(p.1))) r="3" { title { (p.0.date) ": " (p.0.value) } }
            }
            text x="2" y="12" { (max) }
            text x="2" y=(h - pad) { (min) }
            text x=(pad) y=(h - 4.0) { (points[0].0.date) }
            text x=(w - pad) y=(h - 4.0) text-anchor="end" { (points[points.len() - 1].0.date) }
        }
    }
}

fn lab_rows(test: &LabTest) -> Markup {
    let latest = &test.results[0];
    html! {
        tr {
            td data-label="Test" {
                details {
                    summary { (test.name) }
                    @if test.results.len() > 1 {
                        (trend(test))
                        table.history {
                            caption { "All results, newest first" }
                            thead { tr { th { "Date" } th { "Result" } th { "Flag" } } }
                            tbody {
                                @for r in &test.results {
                                    tr { td { (r.date) } td { (r.value) } td { @if let Some(f) = &r.flag { span.flag { (f) } } } }
                                }
                            }
                        }
                    } @else {
                        p { "This is the only result of this test so far." }
                    }
                }
            }
            td data-label="Result" { (latest.value) }
            td data-label="Reference range" { (latest.range) }
            td data-label="Flag" { @if let Some(f) = &latest.flag { span.flag title="Out of range" { (f) } } }
            td data-label="Date" { (latest.date) }
        }
    }
}

/// The documents table (landing page and "View All Documents").
pub fn documents_table(docs: &[DocumentSummary]) -> Markup {
    html! {
        table.results.documents {
            thead { tr { th { "Title" } th { "Type" } th { "Date" } th { "Author" } } }
            tbody {
                @for d in docs {
                    tr {
                        td data-label="Title" { a href=(format!("/documents/{}", d.id)) { (d.title) } }
                        td data-label="Type" { (d.kind) }
                        td data-label="Date" { (d.date) }
                        td data-label="Author" { (d.author) }
                    }
                }
            }
        }
    }
}

pub async fn show(State(state): State<AppState>, visitor: Visitor) -> Response {
    let (actor, patient) = match patient(&visitor, "/") {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let labs = match health::labs(&state.records, &actor, &patient).await {
        Ok(l) => l,
        Err(e) => return render::failure(&e),
    };
    let docs = match health::documents(&state.records, &actor, &patient, 6, 0, None).await {
        Ok((d, _)) => d,
        Err(e) => return render::failure(&e),
    };
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: visitor.signed_in.as_ref(),
        csrf: &visitor.csrf,
    };
    let mut panels: Vec<(Option<&str>, Vec<&LabTest>)> = Vec::new();
    for t in &labs {
        match panels.last_mut() {
            Some((p, tests)) if *p == t.panel.as_deref() => tests.push(t),
            _ => panels.push((t.panel.as_deref(), vec![t])),
        }
    }
    render::respond(
        StatusCode::OK,
        render::page_in_tab(
            &chrome,
            "Health",
            "Health",
            html! {
                nav.actions aria-label="Your whole record" {
                    a.button href="/send-record" { "Send Record" }
                    a.button href="/download" download { "Download" }
                    a.button href="/summary" { "View" }
                }
                section aria-labelledby="labs" {
                    h2 #labs { "Lab results" }
                    @if labs.is_empty() {
                        p { "No lab results yet." }
                    }
                    @for (panel, tests) in &panels {
                        h3 { (panel.unwrap_or("Other tests")) }
                        table.results.labs {
                            thead { tr { th { "Test" } th { "Result" } th { "Reference range" } th { "Flag" } th { "Date" } } }
                            tbody { @for t in tests { (lab_rows(t)) } }
                        }
                    }
                }
                section aria-labelledby="documents" {
                    h2 #documents { "Documents" }
                    @if docs.is_empty() {
                        p { "No documents yet." }
                    } @else {
                        (documents_table(&docs))
                        p { a href="/documents" { "View All Documents" } }
                    }
                }
            },
        ),
    )
}
