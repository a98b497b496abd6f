//! "Download" (`/download`: the whole record as a zip, streamed as it is written) and "View" (`/summary`: the
//! same human-readable summary as a printable page).

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::Visitor;
use super::health::patient;
use super::render::{self, Chrome};
use crate::AppState;
use crate::health::export;

/// A `Write` that hands each chunk to the response body; a browser that went away ends the writing.
struct ChannelWriter(mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the download was cancelled"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The chunks as a body stream.
struct Chunks(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|c| c.map(Ok))
    }
}

/// A buffered writer in front of the channel, so chunks are a useful size.
const CHUNK: usize = 64 * 1024;

pub async fn download(State(state): State<AppState>, visitor: Visitor) -> Response {
    let (actor, id) = match patient(&visitor, "/download") {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let rt = tokio::runtime::Handle::current();
    let practice = state.config.practice_name.clone();
    let records = state.records.clone();
    tokio::task::spawn_blocking(move || {
        let out = std::io::BufWriter::with_capacity(CHUNK, ChannelWriter(tx));
        if let Err(e) = export::write_zip(&records, &actor, &id, &practice, export::Package::default(), &rt, out) {
            // Mid-stream there is no way to tell the browser but to cut the download short.
            tracing::warn!(error = %e, "record download ended early");
        }
    });
    let date = crate::clock::instant(state.clock.now_millis());
    let mut response = (StatusCode::OK, Body::from_stream(Chunks(rx))).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"health-record-{}.zip\"", &date[..10])) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

pub async fn view(State(state): State<AppState>, visitor: Visitor) -> Response {
    let (actor, id) = match patient(&visitor, "/summary") {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let (resource, labs, docs) = match export::summary_data(&state.records, &actor, &id, None).await {
        Ok(d) => d,
        Err(e) => return render::failure(&e),
    };
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
            "Health record summary",
            maud::html! {
                p.noprint { "Use your browser's Print command to print this page or save it as a PDF." }
                (export::summary(&resource, &labs, &docs, &state.config.practice_name))
            },
        ),
    )
}
