//! One [`Config`]: defaults, then an optional TOML file, then `CARESPACE_*` environment variables.
//! Secrets (the database URL's password, the SMTP URL) are masked in `Debug`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One link of the portal's Resources tab.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLink {
    pub name: String,
    pub url: String,
    pub description: String,
}

/// A category patients choose when they write to the care team (TOML `[[message_categories]]`). Codes are
/// those of `profiles/CodeSystem-message-category.json`; a new code is added to that CodeSystem at start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageCategory {
    pub code: String,
    pub label: String,
    /// Offered when composing; a disabled category still names the messages that carry it.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub base_url: String,
    pub data_dir: PathBuf,
    /// Empty: a SQLite file in the data folder.
    pub database_url: String,
    pub smtp_url: Option<String>,
    /// Sender of the portal's email.
    pub mail_from: String,
    /// PEM file of the RS256 key that signs ID tokens; empty: one kept in the database, made on first start.
    pub signing_key: PathBuf,
    /// The practice's name, shown in the portal header and in every email.
    pub practice_name: String,
    /// The id of the Organization that stands for the care team: patients' messages are addressed to it.
    pub practice_organization: String,
    /// What patients may write about (TOML `[[message_categories]]` with code, label, enabled).
    pub message_categories: Vec<MessageCategory>,
    pub demo: bool,
    /// The Resources tab (TOML `[[resources]]` with name, url, description).
    pub resources: Vec<ResourceLink>,
    pub log_json: bool,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    pub default_count: i64,
    pub max_count: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            base_url: "http://127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: String::new(),
            smtp_url: None,
            mail_from: "CareSpace <no-reply@carespace.invalid>".into(),
            practice_name: "CareSpace Demo Practice".into(),
            signing_key: PathBuf::new(),
            practice_organization: "practice".into(),
            message_categories: default_message_categories(),
            demo: false,
            resources: default_resources(),
            log_json: false,
            max_body_bytes: 16 * 1024 * 1024,
            default_count: 50,
            max_count: 1000,
        }
    }
}

fn default_message_categories() -> Vec<MessageCategory> {
    let category = |code: &str, label: &str| MessageCategory {
        code: code.into(),
        label: label.into(),
        enabled: true,
    };
    vec![
        category("rx-question", "Rx question"),
        category("health-question", "Health question"),
    ]
}

fn default_resources() -> Vec<ResourceLink> {
    let link = |name: &str, url: &str, description: &str| ResourceLink {
        name: name.into(),
        url: url.into(),
        description: description.into(),
    };
    vec![
        link(
            "National Cancer Institute",
            "https://www.cancer.gov/",
            "The U.S. government's cancer research agency: reliable information on cancer types, treatment, clinical trials and coping.",
        ),
        link(
            "American Cancer Society",
            "https://www.cancer.org/",
            "Information, support programs and a 24/7 helpline (1-800-227-2345) for people with cancer and their families.",
        ),
        link(
            "CancerCare",
            "https://www.cancercare.org/",
            "Free professional support: counseling, support groups, education and financial assistance.",
        ),
    ]
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = |s: &str| {
            if s.contains('@') {
                format!("***@{}", s.rsplit('@').next().unwrap_or(""))
            } else {
                s.to_owned()
            }
        };
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("base_url", &self.base_url)
            .field("data_dir", &self.data_dir)
            .field("database_url", &mask(&self.database_url))
            .field("smtp_url", &self.smtp_url.as_deref().map(mask))
            .field("mail_from", &self.mail_from)
            .field("practice_name", &self.practice_name)
            .field("practice_organization", &self.practice_organization)
            .field("demo", &self.demo)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Defaults < TOML file (if given) < environment.
    pub fn load(file: Option<&Path>) -> Result<Config, String> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let flag = |v: String| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
        let number = |k: &str, v: String| {
            v.parse::<i64>()
                .map_err(|_| format!("{k} must be a whole number, not '{v}'"))
        };
        if let Some(v) = var("CARESPACE_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = var("CARESPACE_BASE_URL") {
            self.base_url = v;
        }
        if let Some(v) = var("CARESPACE_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = var("CARESPACE_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = var("CARESPACE_SMTP_URL") {
            self.smtp_url = Some(v).filter(|s| !s.is_empty());
        }
        if let Some(v) = var("CARESPACE_MAIL_FROM") {
            self.mail_from = v;
        }
        if let Some(v) = var("CARESPACE_SIGNING_KEY") {
            self.signing_key = v.into();
        }
        if let Some(v) = var("CARESPACE_PRACTICE_NAME") {
            self.practice_name = v;
        }
        if let Some(v) = var("CARESPACE_PRACTICE_ORGANIZATION") {
            self.practice_organization = v;
        }
        if let Some(v) = var("CARESPACE_DEMO") {
            self.demo = flag(v);
        }
        if let Some(v) = var("CARESPACE_LOG_JSON") {
            self.log_json = flag(v);
        }
        if let Some(v) = var("CARESPACE_MAX_BODY_BYTES") {
            self.max_body_bytes = number("CARESPACE_MAX_BODY_BYTES", v)?.max(1024) as usize;
        }
        if let Some(v) = var("CARESPACE_MAX_COUNT") {
            self.max_count = number("CARESPACE_MAX_COUNT", v)?.max(1);
        }
        self.base_url = self.base_url.trim_end_matches('/').to_owned();
        if !crate::fhir::parse::valid_id(&self.practice_organization) {
            return Err(format!(
                "CARESPACE_PRACTICE_ORGANIZATION must be a FHIR id, not '{}'",
                self.practice_organization
            ));
        }
        if let Some(c) = self
            .message_categories
            .iter()
            .find(|c| c.code.is_empty() || c.code.contains(char::is_whitespace) || c.label.trim().is_empty())
        {
            return Err(format!(
                "message category '{}' needs a code without spaces and a label",
                c.code
            ));
        }
        if !self.message_categories.iter().any(|c| c.enabled) {
            return Err("at least one message category must be enabled".into());
        }
        Ok(())
    }

    /// The database URL in force: the configured one, or the SQLite file in the data folder.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("carespace.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// The configured signing key file, if any (else the key lives in the database).
    pub fn signing_key_file(&self) -> Option<&std::path::Path> {
        Some(self.signing_key.as_path()).filter(|p| !p.as_os_str().is_empty())
    }

    /// Whether the portal is served over https (cookies are then `Secure`).
    pub fn https(&self) -> bool {
        self.base_url.starts_with("https://")
    }

    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.base_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_defaults() {
        let mut c = Config::default();
        let env = |k: &str| match k {
            "CARESPACE_BASE_URL" => Some("https://x.example/".to_owned()),
            "CARESPACE_DEMO" => Some("true".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!(c.fhir_base(), "https://x.example/fhir");
        assert!(c.demo);
        assert!(c.database_url().starts_with("sqlite://"));
        let mut bad = Config::default();
        assert!(
            bad.apply_env(|k| (k == "CARESPACE_MAX_COUNT").then(|| "many".to_owned()))
                .is_err()
        );
    }
}
