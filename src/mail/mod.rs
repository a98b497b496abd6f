//! Email: letters are queued in the outbox table (in the same transaction as the change that causes them,
//! see `Store::issue_token`) and a worker sends them: over SMTP when `CARESPACE_SMTP_URL` is set, otherwise
//! as `.eml` files in `<data>/outbox/` with the link logged for the developer. Letters carry the practice
//! name and a link, never health information — except the one letter a patient sends on purpose (Send Record),
//! whose package is an attachment encrypted with a password that travels separately.

pub mod templates;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::SharedStore;
use crate::store::accounts::{MailAttachment, OutboxMail};

/// A letter to queue.
#[derive(Debug, Clone)]
pub struct Letter {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachment: Option<MailAttachment>,
}

impl Letter {
    pub fn queued(self, now: i64) -> OutboxMail {
        OutboxMail {
            id: uuid::Uuid::new_v4().to_string(),
            created: now,
            recipient: self.to,
            subject: self.subject,
            text_body: self.text,
            html_body: self.html,
            attempts: 0,
            next_attempt: now,
            attachment: self.attachment,
        }
    }
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// No mail server configured: `.eml` files in this folder.
    Folder(PathBuf),
}

/// Sends what the outbox holds.
#[derive(Clone)]
pub struct Mailer {
    store: SharedStore,
    clock: Clock,
    transport: Arc<Transport>,
    from: Mailbox,
    /// Where links point, to find them in a letter for the developer's log.
    base_url: String,
    wake: Arc<Notify>,
}

/// How long a claimed letter stays hidden from other senders while it is being sent.
const LEASE_MS: i64 = 2 * 60_000;

impl Mailer {
    pub fn new(config: &Config, store: SharedStore, clock: Clock) -> Result<Mailer> {
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| Error::Store(format!("CARESPACE_SMTP_URL is not usable: {e}")))?
                    .timeout(Some(Duration::from_secs(30)))
                    .build(),
            ),
            None => Transport::Folder(config.data_dir.join("outbox")),
        };
        let from = config.mail_from.parse::<Mailbox>().map_err(|e| {
            Error::Store(format!(
                "CARESPACE_MAIL_FROM '{}' is not an address: {e}",
                config.mail_from
            ))
        })?;
        Ok(Mailer {
            store,
            clock,
            transport: Arc::new(transport),
            from,
            base_url: config.base_url.clone(),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Tells the worker that letters were queued.
    pub fn queued(&self) {
        self.wake.notify_one();
    }

    /// Sends every letter that is due; returns how many went out. Failures are retried later with back-off.
    pub async fn deliver_due(&self) -> Result<usize> {
        let mut sent = 0;
        loop {
            let now = self.clock.now_millis();
            let batch = self.store.claim_mail(now, now + LEASE_MS, 20).await?;
            if batch.is_empty() {
                return Ok(sent);
            }
            for mail in batch {
                match self.send(&mail).await {
                    Ok(()) => {
                        self.store.mail_sent(&mail.id).await?;
                        sent += 1;
                    }
                    Err(why) => {
                        // 1, 2, 4 ... minutes, at most an hour between tries.
                        let wait = 60_000 * (1i64 << mail.attempts.clamp(0, 6)).min(60);
                        tracing::warn!(id = %mail.id, attempts = mail.attempts, %why, "email not sent; will retry");
                        self.store
                            .mail_failed(&mail.id, self.clock.now_millis() + wait, &why)
                            .await?;
                    }
                }
            }
        }
    }

    /// Runs the sender until the process ends: on every wake-up and at least every few seconds (for letters
    /// queued by the command line or due for a retry).
    pub fn spawn_worker(&self) {
        let mailer = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = mailer.deliver_due().await {
                    tracing::error!(error = %e, "the email worker failed; retrying");
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), mailer.wake.notified()).await;
            }
        });
    }

    async fn send(&self, mail: &OutboxMail) -> std::result::Result<(), String> {
        let to: Mailbox = mail.recipient.parse().map_err(|e| format!("bad recipient: {e}"))?;
        let body = MultiPart::alternative_plain_html(mail.text_body.clone(), mail.html_body.clone());
        let body = match &mail.attachment {
            None => body,
            Some(a) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&a.data)
                    .map_err(|e| format!("attachment: {e}"))?;
                let kind = ContentType::parse(&a.content_type).map_err(|e| format!("attachment type: {e}"))?;
                MultiPart::mixed()
                    .multipart(body)
                    .singlepart(Attachment::new(a.name.clone()).body(bytes, kind))
            }
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .multipart(body)
            .map_err(|e| e.to_string())?;
        match &*self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|e| e.to_string()),
            Transport::Folder(dir) => {
                tokio::fs::create_dir_all(dir).await.map_err(|e| e.to_string())?;
                let name = format!("{}-{}.eml", mail.created, mail.id);
                let staged = dir.join(format!(".{name}.tmp"));
                tokio::fs::write(&staged, message.formatted())
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::fs::rename(&staged, dir.join(&name))
                    .await
                    .map_err(|e| e.to_string())?;
                // Without fragments: a SMART Health Link's key travels in one (`/shl/view#shlink:/…`) and
                // must stay in the letter.
                let links: Vec<&str> = mail
                    .text_body
                    .split_whitespace()
                    .filter(|w| w.starts_with(&self.base_url))
                    .filter_map(|w| w.split('#').next())
                    .collect();
                tracing::info!(
                    to = %mail.recipient,
                    file = %dir.join(&name).display(),
                    links = ?links,
                    "email written to the outbox folder (no CARESPACE_SMTP_URL set); its link is logged for local development only"
                );
                Ok(())
            }
        }
    }
}
