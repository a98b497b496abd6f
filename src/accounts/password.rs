//! The password policy the practice tells patients (8+ characters with an uppercase letter, a lowercase
//! letter, a number and a special character) and Argon2id hashing.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{Error, Result};

/// Longer passwords are refused so that hashing cost stays bounded.
pub const MAX_LEN: usize = 256;

/// One rule of the policy: an id, the words shown when it is not met, and the same rule as a JavaScript
/// regular expression (`u` flag) for the page's live checklist; the server's check is the closure.
pub struct Rule {
    pub id: &'static str,
    pub text: &'static str,
    pub pattern: &'static str,
    met: fn(&str) -> bool,
}

pub const RULES: &[Rule] = &[
    Rule {
        id: "length",
        pattern: "^[\\s\\S]{8,}$",
        text: "At least 8 characters",
        met: |p| p.chars().count() >= 8,
    },
    Rule {
        id: "upper",
        pattern: "\\p{Lu}",
        text: "At least 1 uppercase letter",
        met: |p| p.chars().any(char::is_uppercase),
    },
    Rule {
        id: "lower",
        pattern: "\\p{Ll}",
        text: "At least 1 lowercase letter",
        met: |p| p.chars().any(char::is_lowercase),
    },
    Rule {
        id: "number",
        pattern: "[0-9]",
        text: "At least 1 number",
        met: |p| p.chars().any(|c| c.is_ascii_digit()),
    },
    Rule {
        id: "special",
        pattern: "[^\\p{L}\\p{N}\\s]",
        text: "At least 1 special character (for example ! ? # @ $ %)",
        met: |p| p.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace()),
    },
];

impl Rule {
    pub fn is_met(&self, password: &str) -> bool {
        (self.met)(password)
    }
}

/// The rules `password` does not meet (empty: acceptable).
pub fn unmet(password: &str) -> Vec<&'static Rule> {
    RULES.iter().filter(|r| !r.is_met(password)).collect()
}

/// Checks a new password and its confirmation; errors name the form field they belong to.
pub fn check_new(password: &str, confirm: &str) -> Result<()> {
    let unmet = unmet(password);
    if !unmet.is_empty() {
        let list: Vec<&str> = unmet.iter().map(|r| r.text).collect();
        return Err(Error::field(
            "password",
            format!("The password needs: {}.", list.join("; ")),
        ));
    }
    if password.len() > MAX_LEN {
        return Err(Error::field(
            "password",
            format!("The password must be at most {MAX_LEN} characters."),
        ));
    }
    if password != confirm {
        return Err(Error::field("confirm", "The two passwords do not match."));
    }
    Ok(())
}

/// A random password that meets the policy: 120 random bits plus one character of each required kind.
pub fn generate() -> Result<String> {
    let random = super::secret::token()?;
    Ok(format!("{}-Aa1", &random[..20]))
}

/// A well-formed Argon2id hash (default parameters) that no password is known to match.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1LxPk9lr6Gqf5o6H0ekVQYL4cW4d/Q3jn9r8QxkQd0o";

pub fn hash(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Store(format!("password hashing failed: {e}")))
}

/// Verifies `password` against a stored hash. With no hash (no such account, or not registered yet) a fixed
/// hash is checked instead, so the answer takes as long either way and reveals nothing.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    let real = stored.is_some();
    let Ok(parsed) = PasswordHash::new(stored.unwrap_or(DECOY)) else {
        return false;
    };
    let password = if password.len() > MAX_LEN {
        &password[..0]
    } else {
        password
    };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_is_checked_on_its_own() {
        assert!(unmet("Abcdef1!").is_empty());
        let ids = |p: &str| unmet(p).iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids("Abcde1!"), ["length"]);
        assert_eq!(ids("abcdef1!"), ["upper"]);
        assert_eq!(ids("ABCDEF1!"), ["lower"]);
        assert_eq!(ids("Abcdefg!"), ["number"]);
        assert_eq!(ids("Abcdefg1"), ["special"]);
        assert_eq!(ids("Äbcdéf1€"), Vec::<&str>::new());
        assert!(check_new("Abcdef1!", "Abcdef1?").is_err());
        assert!(check_new("Abcdef1!", "Abcdef1!").is_ok());
        let generated = generate().unwrap();
        assert!(unmet(&generated).is_empty(), "{generated}");
    }

    #[test]
    fn hashes_verify_only_their_password() {
        let h = hash("Abcdef1!").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("Abcdef1!", Some(&h)));
        assert!(!verify("Abcdef1?", Some(&h)));
        assert!(!verify("anything", None));
        // The decoy must parse, or an unknown email would be answered faster than a known one.
        assert!(PasswordHash::new(DECOY).is_ok());
    }
}
