//! The SMART scope grammar, v1 (`patient/Observation.read`, `user/*.write`, `system/*.*`) and v2
//! (`patient/Observation.rs`, `patient/Observation.rs?category=laboratory`, `system/*.cruds`), plus the
//! non-resource scopes (`openid`, `fhirUser`, `launch`, `launch/patient`, `offline_access`, `online_access`).
//! Pure parsing: what a scope grants is decided by the gate (`access/`).

use std::fmt;

/// Whose data a resource scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Context {
    /// The launch patient's compartment.
    Patient,
    /// Whatever the signed-in user may see.
    User,
    /// Backend services: the whole server.
    System,
}

/// The interactions a scope allows, as in SMART v2 (`c r u d s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ops {
    pub create: bool,
    pub read: bool,
    pub update: bool,
    pub delete: bool,
    pub search: bool,
}

impl Ops {
    fn parse(s: &str) -> Option<Ops> {
        Some(match s {
            "read" => Ops {
                read: true,
                search: true,
                ..Ops::default()
            },
            "write" => Ops {
                create: true,
                update: true,
                delete: true,
                ..Ops::default()
            },
            "*" => Ops {
                create: true,
                read: true,
                update: true,
                delete: true,
                search: true,
            },
            v2 => {
                // The letters must be in the order c, r, u, d, s, each at most once.
                let mut ops = Ops::default();
                let mut last = 0;
                for c in v2.chars() {
                    let rank = "cruds".find(c)? + 1;
                    if rank <= last {
                        return None;
                    }
                    last = rank;
                    match c {
                        'c' => ops.create = true,
                        'r' => ops.read = true,
                        'u' => ops.update = true,
                        'd' => ops.delete = true,
                        _ => ops.search = true,
                    }
                }
                if last == 0 {
                    return None;
                }
                ops
            }
        })
    }

    /// The v2 letters.
    pub fn letters(self) -> String {
        [
            (self.create, 'c'),
            (self.read, 'r'),
            (self.update, 'u'),
            (self.delete, 'd'),
            (self.search, 's'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }
}

/// One resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    pub context: Context,
    /// `None` for `*`.
    pub rtype: Option<String>,
    pub ops: Ops,
    /// v2 granular scopes: the search parameters (`category=laboratory`) a resource must match.
    pub query: Option<String>,
}

/// A parsed scope string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes {
    pub resources: Vec<ResourceScope>,
    /// Every scope as written, in order (for echoing what was granted).
    pub all: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError(pub String);

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scopes that are not about resources.
pub const OTHER_SCOPES: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
];

fn resource_scope(s: &str) -> Option<ResourceScope> {
    let (context, rest) = s.split_once('/')?;
    let context = match context {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        _ => return None,
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) if !q.is_empty() => (r, Some(q.to_owned())),
        Some(_) => return None,
        None => (rest, None),
    };
    let (rtype, ops) = rest.split_once('.')?;
    let rtype = match rtype {
        "*" => None,
        t if !t.is_empty()
            && t.chars().all(|c| c.is_ascii_alphanumeric())
            && t.starts_with(|c: char| c.is_ascii_uppercase()) =>
        {
            Some(t.to_owned())
        }
        _ => return None,
    };
    let ops = Ops::parse(ops)?;
    // v1 `.read`/`.write` take no query.
    Some(ResourceScope {
        context,
        rtype,
        ops,
        query,
    })
}

impl Scopes {
    /// Parses a space-separated scope string. Unknown scopes are an error (the caller decides whether to
    /// refuse or drop them).
    pub fn parse(s: &str) -> Result<Scopes, ScopeError> {
        let mut scopes = Scopes::default();
        for word in s.split_whitespace() {
            if scopes.all.iter().any(|w| w == word) {
                continue;
            }
            if !OTHER_SCOPES.contains(&word) {
                let r = resource_scope(word).ok_or_else(|| ScopeError(format!("unknown scope '{word}'")))?;
                scopes.resources.push(r);
            }
            scopes.all.push(word.to_owned());
        }
        Ok(scopes)
    }

    pub fn has(&self, word: &str) -> bool {
        self.all.iter().any(|w| w == word)
    }

    /// The scopes of `self` that `allowed` (a client's registration) permits: a resource scope is permitted
    /// when a registered one of the same context covers its type and every one of its interactions (and has
    /// no query, or the same query).
    pub fn within(&self, allowed: &Scopes) -> Scopes {
        let keep = |word: &String| {
            if OTHER_SCOPES.contains(&word.as_str()) {
                return allowed.has(word);
            }
            let Some(r) = resource_scope(word) else {
                return false;
            };
            allowed.resources.iter().any(|a| {
                a.context == r.context
                    && (a.rtype.is_none() || a.rtype == r.rtype)
                    && (!r.ops.create || a.ops.create)
                    && (!r.ops.read || a.ops.read)
                    && (!r.ops.update || a.ops.update)
                    && (!r.ops.delete || a.ops.delete)
                    && (!r.ops.search || a.ops.search)
                    && (a.query.is_none() || a.query == r.query)
            })
        };
        let all: Vec<String> = self.all.iter().filter(|w| keep(w)).cloned().collect();
        Scopes::parse(&all.join(" ")).unwrap_or_default()
    }

    /// Keeps only the scopes `pred` accepts.
    pub fn only(&self, pred: impl Fn(&str) -> bool) -> Scopes {
        let all: Vec<String> = self.all.iter().filter(|w| pred(w)).cloned().collect();
        Scopes::parse(&all.join(" ")).unwrap_or_default()
    }

    /// The resource scopes allowing `op` on `rtype`.
    pub fn allowing<'a>(
        &'a self,
        rtype: &'a str,
        op: impl Fn(Ops) -> bool + 'a,
    ) -> impl Iterator<Item = &'a ResourceScope> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.rtype.as_deref().is_none_or(|t| t == rtype) && op(r.ops))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.all.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_scopes() {
        let s = Scopes::parse("openid fhirUser launch/patient patient/Observation.rs?category=laboratory user/*.read system/*.cruds patient/Patient.write").unwrap();
        assert_eq!(s.resources.len(), 4);
        assert_eq!(s.resources[0].query.as_deref(), Some("category=laboratory"));
        assert_eq!(s.resources[0].ops.letters(), "rs");
        assert_eq!(s.resources[1].context, Context::User);
        assert_eq!(s.resources[1].rtype, None);
        assert_eq!(s.resources[2].ops.letters(), "cruds");
        assert_eq!(s.resources[3].ops.letters(), "cud");
        assert!(s.has("openid"));
        for bad in [
            "patient/Observation.sr",
            "patient/Observation.rr",
            "patient/observation.rs",
            "patient/Observation.x",
            "doctor/*.read",
            "patient/Observation",
            "patient/Observation.rs?",
            "admin",
        ] {
            assert!(Scopes::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Scopes::parse("  openid   openid ").unwrap().to_string(), "openid");
    }

    #[test]
    fn requests_are_cut_to_what_the_client_may_ask() {
        let registered = Scopes::parse("openid launch/patient patient/*.rs patient/Observation.cruds").unwrap();
        let asked = Scopes::parse("openid fhirUser patient/Observation.read patient/Condition.rs patient/Condition.c patient/Observation.c user/*.rs").unwrap();
        assert_eq!(
            asked.within(&registered).to_string(),
            "openid patient/Observation.read patient/Condition.rs patient/Observation.c"
        );
        let obs: Vec<_> = Scopes::parse("patient/Observation.rs patient/*.c")
            .unwrap()
            .allowing("Observation", |o| o.read)
            .map(|r| r.ops.letters())
            .collect();
        assert_eq!(obs, ["rs"]);
    }

    use proptest::prelude::*;

    /// Scope-like words: the grammar's pieces, recombined, plus noise.
    fn word() -> impl Strategy<Value = String> {
        let context = prop_oneof![Just("patient"), Just("user"), Just("system"), Just("launch"), Just("x")];
        let rtype = prop_oneof![
            Just("*"),
            Just("Observation"),
            Just("Patient"),
            Just(""),
            Just("obs"),
            Just("A1")
        ];
        let ops = prop_oneof![
            Just("read"),
            Just("write"),
            Just("cruds"),
            Just("rs"),
            Just("sr"),
            Just("c"),
            Just(""),
            Just("*")
        ];
        let query = prop_oneof![Just(""), Just("?"), Just("?category=laboratory"), Just("?a=b&c=d")];
        prop_oneof![
            (context, rtype, ops, query).prop_map(|(c, t, o, q)| format!("{c}/{t}.{o}{q}")),
            Just("openid".to_owned()),
            Just("launch/patient".to_owned()),
            "\\PC{0,16}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Parsing never panics; what parses prints back to itself, permits itself, and narrowing by a
        /// registration keeps only words that were asked for and is idempotent.
        #[test]
        fn scope_parsing_and_narrowing(asked in prop::collection::vec(word(), 0..6), registered in prop::collection::vec(word(), 0..6)) {
            let asked = Scopes::parse(&asked.join(" "));
            let registered = Scopes::parse(&registered.join(" "));
            if let (Ok(asked), Ok(registered)) = (asked, registered) {
                let printed = Scopes::parse(&asked.to_string());
                prop_assert_eq!(printed.as_ref(), Ok(&asked));
                prop_assert_eq!(&asked.within(&asked), &asked);
                let granted = asked.within(&registered);
                prop_assert!(granted.all.iter().all(|w| asked.has(w)));
                prop_assert_eq!(&granted.within(&registered), &granted);
                for r in &granted.resources {
                    prop_assert!(registered.resources.iter().any(|a| a.context == r.context
                        && (a.rtype.is_none() || a.rtype == r.rtype)
                        && (!r.ops.create || a.ops.create) && (!r.ops.delete || a.ops.delete)));
                }
            }
        }
    }
}
