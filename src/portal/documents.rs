//! "View All Documents" (`/documents`: paged, filtered by type) and opening one (`/documents/{id}`: shown in
//! the browser, or downloaded with `?download=1`).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::Visitor;
use super::health::{documents_table, patient};
use super::render::{self, Chrome};
use crate::AppState;
use crate::error::Error;
use crate::health;

const PAGE: i64 = 20;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    page: Option<i64>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct OpenQuery {
    #[serde(default)]
    download: Option<String>,
}

pub async fn list(State(state): State<AppState>, visitor: Visitor, Query(q): Query<ListQuery>) -> Response {
    let (actor, id) = match patient(&visitor, "/documents") {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let page = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let kind = q.kind.as_deref().filter(|k| !k.is_empty());
    let result = async {
        let (docs, total) = health::documents(&state.records, &actor, &id, PAGE, (page - 1) * PAGE, kind).await?;
        let types = health::document_types(&state.records, &actor, &id).await?;
        Ok::<_, Error>((docs, total, types))
    }
    .await;
    let (docs, total, types) = match result {
        Ok(r) => r,
        Err(e) => return render::failure(&e),
    };
    let pages = ((total + PAGE - 1) / PAGE).max(1);
    let link = |p: i64| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("page", &p.to_string());
        if let Some(k) = kind {
            q.append_pair("type", k);
        }
        format!("/documents?{}", q.finish())
    };
    if page > pages {
        return axum::response::Redirect::to(&link(pages)).into_response();
    }
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: visitor.signed_in.as_ref(),
        csrf: &visitor.csrf,
    };
    render::respond(
        StatusCode::OK,
        render::page_in_tab(
            &chrome,
            "Health",
            "All Documents",
            html! {
                form.search method="get" action="/documents" {
                    label for="type" { "Type" }
                    select id="type" name="type" {
                        option value="" { "All types" }
                        @for (code, words) in &types {
                            option value=(code) selected[kind == Some(code.as_str())] { (words) }
                        }
                    }
                    button type="submit" { "Show" }
                }
                p { (total) " document" @if total != 1 { "s" } }
                (documents_table(&docs))
                (render::pager(page, pages, link))
                p { a href="/" { "Back to Health" } }
            },
        ),
    )
}

pub async fn open(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(doc): Path<String>,
    Query(q): Query<OpenQuery>,
) -> Response {
    let (actor, _) = match patient(&visitor, &format!("/documents/{doc}")) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match health::attachment(&state.records, &actor, &doc).await {
        Ok(a) => {
            let disposition = if q.download.is_some() { "attachment" } else { "inline" };
            let safe_name: String = a
                .title
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut response = (StatusCode::OK, a.bytes).into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&a.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{safe_name}\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            // Stored documents are untrusted: an HTML or SVG one must not run script on this origin.
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'",
                ),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e @ (Error::NotFound(_) | Error::Gone(_) | Error::Unprocessable(_))) => render::message_page(
            &state,
            StatusCode::NOT_FOUND,
            "This document cannot be opened",
            &render::Problems::of(&e).general.unwrap_or_default(),
        ),
        Err(e) => render::failure(&e),
    }
}
