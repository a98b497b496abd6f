//! The letters, one function per purpose, each with a subject, a plain-text part and an HTML part. They name
//! the practice and carry a link; they never contain health information.

use maud::html;

use super::Letter;

fn letter(to: &str, subject: String, intro: &str, action: &str, link: &str, after: &str, practice: &str) -> Letter {
    let text = format!("{intro}\n\n{action}:\n{link}\n\n{after}\n\n{practice}\n");
    let html = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (subject) } }
            body style="font-family: sans-serif; line-height: 1.5" {
                p { (intro) }
                p { a href=(link) style="font-weight: bold" { (action) } }
                p { (after) }
                p { (practice) }
            }
        }
    };
    Letter {
        to: to.to_owned(),
        subject,
        text,
        html: html.into_string(),
        attachment: None,
    }
}

/// "Complete Your Registration": the invitation to a new patient portal account.
pub fn invite(to: &str, practice: &str, link: &str, valid_days: i64) -> Letter {
    letter(
        to,
        format!("{practice}: Complete Your Registration"),
        &format!("{practice} has invited you to its patient portal."),
        "Complete Your Registration",
        link,
        &format!(
            "The link works once and for {valid_days} days. If it has expired, ask the practice to resend the invitation. If you did not expect this email, you can ignore it."
        ),
        practice,
    )
}

/// The link to choose a new password.
pub fn password_reset(to: &str, practice: &str, link: &str, valid_minutes: i64) -> Letter {
    letter(
        to,
        format!("{practice}: Reset your password"),
        &format!("Someone (hopefully you) asked to reset the password of your {practice} patient portal account."),
        "Reset your password",
        link,
        &format!(
            "The link works once and for {valid_minutes} minutes. If you did not ask for this, ignore this email: your password stays as it is."
        ),
        practice,
    )
}

/// "You have a new message": says only that the care team wrote, and where to read it.
pub fn new_message(to: &str, practice: &str, link: &str) -> Letter {
    letter(
        to,
        format!("{practice}: You have a new message"),
        &format!("Your care team at {practice} sent you a secure message in the patient portal."),
        "Read your message",
        link,
        "For your privacy the message itself is not in this email. Sign in to the portal to read and answer it.",
        practice,
    )
}

/// A patient gave someone access to their record; the person has no account yet.
pub fn proxy_invite(to: &str, practice: &str, patient: &str, link: &str, valid_days: i64) -> Letter {
    letter(
        to,
        format!("{practice}: {patient} has given you access to their health record"),
        &format!("{patient} has given you access to their record in the {practice} patient portal."),
        "Complete Your Registration",
        link,
        &format!(
            "You will confirm your date of birth and choose a password. The link works once and for {valid_days} days; if it has expired, ask {patient} to resend it. If you did not expect this email, you can ignore it."
        ),
        practice,
    )
}

/// A patient gave access to someone who already has a portal account.
pub fn proxy_access(to: &str, practice: &str, patient: &str, link: &str) -> Letter {
    letter(
        to,
        format!("{practice}: {patient} has given you access to their health record"),
        &format!("{patient} has given you access to their record in the {practice} patient portal."),
        "Log in to open it",
        link,
        "After logging in, choose whose record to open. If you did not expect this email, you can ignore it.",
        practice,
    )
}

/// Send Record: the letter to an outside provider that carries the encrypted package (attached by the
/// caller). It says who sent it (`proxy`: the name of someone acting for the patient, `None` when the patient
/// did), for which dates, the sender's notes, and that the password comes separately.
pub fn record_sent(
    to: &str,
    practice: &str,
    (patient, proxy): (&str, Option<&str>),
    (start, end): (&str, &str),
    notes: &str,
    shlink: &str,
) -> Letter {
    let sender = proxy.unwrap_or(patient);
    let (subject, intro) = match proxy {
        None => (
            format!("{patient} sent you health records ({practice})"),
            format!(
                "{patient}, a patient of {practice}, sent you their health records dated {start} to {end} through the {practice} patient portal."
            ),
        ),
        Some(proxy) => (
            format!("{proxy} sent you health records of {patient} ({practice})"),
            format!(
                "{proxy}, acting for {patient} (a patient of {practice}), sent you {patient}'s health records dated {start} to {end} through the {practice} patient portal."
            ),
        ),
    };
    let password = format!(
        "The attached health-record.zip is encrypted. {sender} will give you its password separately; it is not in this email. Open it with 7-Zip or another tool that reads AES-encrypted zip files. Inside: the records as a FHIR Bundle (record/everything.json), one NDJSON file per resource type, the documents, and a readable summary (summary.html)."
    );
    let link = "Your EHR can also fetch the same records as FHIR with this SMART Health Link (the same password is its passcode; it expires in 30 days), or you can open them in your browser at this address:";
    let text = if notes.is_empty() {
        format!("{intro}\n\n{password}\n\n{link}\n{shlink}\n\n{practice}\n")
    } else {
        format!("{intro}\n\nNotes from {sender}:\n{notes}\n\n{password}\n\n{link}\n{shlink}\n\n{practice}\n")
    };
    let html = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (subject) } }
            body style="font-family: sans-serif; line-height: 1.5" {
                p { (intro) }
                @if !notes.is_empty() {
                    p { strong { "Notes from " (sender) ":" } }
                    p style="white-space: pre-wrap" { (notes) }
                }
                p { (password) }
                p { (link) }
                p style="word-break: break-all; font-family: monospace" { (shlink) }
                p { (practice) }
            }
        }
    };
    Letter {
        to: to.to_owned(),
        subject,
        text,
        html: html.into_string(),
        attachment: None,
    }
}
