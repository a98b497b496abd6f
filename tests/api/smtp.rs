//! A real SMTP server for the tests: it speaks enough of RFC 5321 for lettre (EHLO, MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT), keeps every message it receives, and lets a test wait for the next one to a recipient. It can
//! turn mail away for a while, as a busy server does.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: Vec<String>,
    /// The message as sent (headers and MIME body).
    pub data: String,
}

impl Received {
    /// The message's parts decoded (quoted-printable soft breaks and escapes undone).
    pub fn decoded(&self) -> String {
        let raw = self.data.replace("=\r\n", "").replace("=\n", "");
        let bytes = raw.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if bytes[i] == b'='
                && i + 2 < bytes.len()
                && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
            {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The bytes of the attachment named `name` (a base64 MIME part).
    pub fn attachment(&self, name: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let start = self.data.find(&format!("filename=\"{name}\""))?;
        let rest = &self.data[start..];
        let body_start = rest
            .find("\r\n\r\n")
            .map(|i| i + 4)
            .or_else(|| rest.find("\n\n").map(|i| i + 2))?;
        let body = &rest[body_start..];
        let body = &body[..body.find("\n--").unwrap_or(body.len())];
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }

    /// The first link under `base` in the message.
    pub fn link(&self, base: &str) -> String {
        let text = self.decoded();
        let start = text
            .find(base)
            .unwrap_or_else(|| panic!("no link to {base} in:\n{text}"));
        text[start..]
            .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn subject(&self) -> String {
        self.data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Clone, Default)]
pub struct SmtpSink {
    inbox: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    refusing: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    pub url: String,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let sink = SmtpSink {
            url: format!("smtp://127.0.0.1:{port}"),
            ..SmtpSink::default()
        };
        let served = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = served.clone();
                tokio::spawn(async move {
                    let _ = sink.session(stream).await;
                });
            }
        });
        sink
    }

    async fn session(&self, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        write.write_all(b"220 test-sink ESMTP\r\n").await?;
        let mut to = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let command = line.trim_end().to_ascii_uppercase();
            let reply: &[u8] = if command.starts_with("EHLO") {
                b"250-test-sink\r\n250 8BITMIME\r\n"
            } else if command.starts_with("HELO") || command.starts_with("MAIL") || command.starts_with("NOOP") {
                b"250 OK\r\n"
            } else if command.starts_with("RSET") {
                to.clear();
                b"250 OK\r\n"
            } else if command.starts_with("RCPT") && self.refusing.load(Ordering::SeqCst) {
                self.refused.fetch_add(1, Ordering::SeqCst);
                b"450 mailbox busy, try again later\r\n"
            } else if command.starts_with("RCPT") {
                let addr = line.trim_end()[8..]
                    .trim()
                    .trim_start_matches(':')
                    .trim()
                    .trim_matches(['<', '>']);
                to.push(addr.to_owned());
                b"250 OK\r\n"
            } else if command == "DATA" {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(
                        line.strip_prefix('.')
                            .filter(|_| line.starts_with(".."))
                            .unwrap_or(&line),
                    );
                }
                self.inbox.lock().expect("inbox").push(Received {
                    to: std::mem::take(&mut to),
                    data,
                });
                self.arrived.notify_waiters();
                b"250 OK queued\r\n"
            } else if command.starts_with("QUIT") {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                b"502 not implemented\r\n"
            };
            write.write_all(reply).await?;
        }
    }

    /// While `on`, every recipient is turned away with a temporary failure (450).
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }

    /// Waits (up to 15 s) until `count` recipients have been turned away in all.
    pub async fn wait_for_refusals(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.refused.load(Ordering::SeqCst) < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {count} recipients were turned away"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every message received for `to` so far.
    pub fn messages_to(&self, to: &str) -> Vec<Received> {
        self.inbox
            .lock()
            .expect("inbox")
            .iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
            .cloned()
            .collect()
    }

    /// Waits (up to 15 s) until `to` has received `count` messages; returns the newest.
    pub async fn wait_for(&self, to: &str, count: usize) -> Received {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let arrived = self.arrived.notified();
            let got = self.messages_to(to);
            if got.len() >= count {
                return got[count - 1].clone();
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("no message #{count} for {to} within 15 s (have {})", got.len());
            }
        }
    }
}
