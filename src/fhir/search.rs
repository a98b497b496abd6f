//! FHIR search grammar: from query parameters to a typed [`Query`] the store runs, plus the result controls
//! (`_include`, `_revinclude`, `_elements`, `_summary`). Unknown parameters are ignored and reported (FHIR's
//! lenient handling), unsupported modifiers are errors.

use super::datetime;
use super::extract::{clip, local_reference, normalize};
use super::params::{Kind, Registry};
use crate::error::{Error, Issue, Result};
use crate::store::{Clause, Condition, Prefix, Query, Sort, SortKey};

/// `Type:param[:target]` for `_include`, `Type:param` for `_revinclude`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source: String,
    pub param: String,
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchRequest {
    pub query: Query,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    /// `_elements`: top-level elements to keep (plus the mandatory ones).
    pub elements: Option<Vec<String>>,
    /// The parameters that were used, for the self and paging links.
    pub used: Vec<(String, String)>,
    /// Parameters that were ignored, with why.
    pub ignored: Vec<String>,
}

/// Paging limits from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default_count: i64,
    pub max_count: i64,
}

/// Reference types tried for a bare id (`subject=123`) when the parameter does not name its target.
const BARE_ID_TYPES: &[&str] = &[
    "Patient",
    "Practitioner",
    "Organization",
    "Encounter",
    "Group",
    "RelatedPerson",
    "Device",
    "Location",
    "PractitionerRole",
];

pub fn parse(
    rtype: &str,
    params: &[(String, String)],
    registry: &Registry,
    limits: Limits,
    base: &str,
    now: i64,
) -> Result<SearchRequest> {
    if params.len() > MAX_PARAMETERS {
        return Err(bad("(all)", &format!("more than {MAX_PARAMETERS} parameters")));
    }
    let mut req = SearchRequest {
        query: Query {
            rtype: rtype.to_owned(),
            count: limits.default_count,
            total: true,
            ..Query::default()
        },
        ..SearchRequest::default()
    };
    for (key, value) in params {
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key.as_str(), None),
        };
        let mut used = true;
        match name {
            "_count" => {
                let n: i64 = value.parse().map_err(|_| bad(key, "must be a whole number"))?;
                if n < 0 {
                    return Err(bad(key, "must not be negative"));
                }
                req.query.count = n.min(limits.max_count);
            }
            "_offset" => {
                req.query.offset = offset(value).ok_or_else(|| bad(key, "must be a whole number up to 10^9"))?
            }
            "_total" => req.query.total = value != "none",
            "_summary" => match value.as_str() {
                "count" => {
                    req.query.count = 0;
                    req.query.total = true;
                }
                "false" => {}
                _ => return Err(bad(key, "only _summary=count and false are supported")),
            },
            "_elements" => {
                req.elements = Some(
                    value
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect(),
                );
            }
            "_sort" => {
                for key_text in value.split(',').filter(|s| !s.is_empty()) {
                    let (descending, pname) = match key_text.strip_prefix('-') {
                        Some(p) => (true, p),
                        None => (false, key_text),
                    };
                    let key = match pname {
                        "_lastUpdated" => SortKey::LastUpdated,
                        "_id" => SortKey::Id,
                        p => match registry.param(rtype, p).map(|p| p.kind) {
                            Some(Kind::Date) => SortKey::Date(p.to_owned()),
                            Some(Kind::String) => SortKey::Text(p.to_owned()),
                            Some(Kind::Token | Kind::Uri) => SortKey::Token(p.to_owned()),
                            Some(Kind::Quantity | Kind::Number) => SortKey::Number(p.to_owned()),
                            Some(Kind::Reference) | None => {
                                return Err(bad("_sort", &format!("cannot sort by '{p}'")));
                            }
                        },
                    };
                    req.query.sort.push(Sort { key, descending });
                }
            }
            "_include" | "_revinclude" => {
                let mut parts = value.split(':');
                let (Some(source), Some(param)) = (parts.next(), parts.next()) else {
                    return Err(bad(key, "expected Type:parameter[:targetType]"));
                };
                if registry
                    .param(source, param)
                    .filter(|p| p.kind == Kind::Reference)
                    .is_none()
                {
                    return Err(bad(key, &format!("{source}:{param} is not a reference parameter")));
                }
                let include = Include {
                    source: source.to_owned(),
                    param: param.to_owned(),
                    target: parts.next().map(str::to_owned),
                };
                if name == "_include" {
                    if source != rtype {
                        return Err(bad(key, &format!("_include must start with {rtype}")));
                    }
                    req.includes.push(include);
                } else {
                    req.revincludes.push(include);
                }
            }
            "_format" | "_pretty" => used = false,
            "_id" if modifier.is_none() => {
                let values = alternatives(key, value)?;
                req.query.clauses.push(Clause {
                    param: "_id".into(),
                    any_of: values.into_iter().map(Condition::Id).collect(),
                    negate: false,
                });
            }
            "_lastUpdated" if modifier.is_none() => {
                let any_of = alternatives(key, value)?
                    .iter()
                    .map(|v| date_condition(key, v, true, now))
                    .collect::<Result<_>>()?;
                req.query.clauses.push(Clause {
                    param: "_lastUpdated".into(),
                    any_of,
                    negate: false,
                });
            }
            "_id" | "_lastUpdated" => return Err(Error::NotSupported(format!("modifier on {key} is not supported"))),
            _ => match registry.param(rtype, name) {
                Some(param) => {
                    let clause = clause(name, param.kind, modifier, value, key, base, now)?;
                    req.query.clauses.push(clause);
                }
                None if name.contains('.') => {
                    return Err(Error::NotSupported(format!("chained search '{key}' is not supported")));
                }
                None => {
                    req.ignored
                        .push(format!("unknown search parameter '{key}' for {rtype} was ignored"));
                    used = false;
                }
            },
        }
        if used {
            req.used.push((key.clone(), value.clone()));
        }
    }
    // A single `patient=Patient/X` puts every match in X's compartment (the patient parameter is always
    // one of the compartment's), so the store may look only there.
    req.query.patient =
        req.query
            .clauses
            .iter()
            .find_map(|c| match (c.param.as_str(), c.negate, c.any_of.as_slice()) {
                ("patient", false, [Condition::Reference(target)]) => {
                    target.strip_prefix("Patient/").map(str::to_owned)
                }
                _ => None,
            });
    if req.query.sort.is_empty() {
        req.query.sort.push(Sort {
            key: SortKey::LastUpdated,
            descending: true,
        });
    }
    Ok(req)
}

/// A paging offset: a whole number from 0 to 10^9 (our next links never go further; larger is abuse).
pub fn offset(value: &str) -> Option<i64> {
    value.parse::<i64>().ok().filter(|n| (0..=1_000_000_000).contains(n))
}

/// The most alternatives one parameter may list (`code=a,b,c…`): enough for any real query, and a bound on the
/// size of the SQL it becomes.
const MAX_ALTERNATIVES: usize = 100;

/// The most parameters one search may carry.
const MAX_PARAMETERS: usize = 100;

fn bad(key: &str, why: &str) -> Error {
    Error::invalid(Issue::new("processing", format!("search parameter {key}: {why}")))
}

/// The alternatives of a parameter value: at least one, at most [`MAX_ALTERNATIVES`].
fn alternatives(key: &str, value: &str) -> Result<Vec<String>> {
    let values = split_or(value);
    match values.len() {
        0 => Err(bad(key, "has no value")),
        n if n > MAX_ALTERNATIVES => Err(bad(key, &format!("lists more than {MAX_ALTERNATIVES} values"))),
        _ => Ok(values),
    }
}

/// Comma-separated alternatives, with `\,` as a literal comma.
fn split_or(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(',' | '\\' | '|' | '$')) => out
                .last_mut()
                .unwrap_or(&mut String::new())
                .push(chars.next().unwrap_or(c)),
            ',' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

fn prefix_of(value: &str) -> (Prefix, &str) {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("lt", Prefix::Lt),
        ("gt", Prefix::Gt),
        ("le", Prefix::Le),
        ("ge", Prefix::Ge),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (p, prefix) in prefixes {
        if let Some(rest) = value.strip_prefix(p)
            && rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        {
            return (prefix, rest);
        }
    }
    (Prefix::Eq, value)
}

fn date_condition(key: &str, value: &str, last_updated: bool, now: i64) -> Result<Condition> {
    let (prefix, date) = prefix_of(value);
    let (mut low, mut high) =
        datetime::range(date).ok_or_else(|| bad(key, &format!("'{value}' is not a valid date")))?;
    if prefix == Prefix::Ap {
        // Approximately: within 10% of the distance from now, and at least a day, on either side.
        let slack = (now.saturating_sub(low).abs() / 10).max(86_400_000);
        (low, high) = (low.saturating_sub(slack), high.saturating_add(slack));
    }
    Ok(if last_updated {
        Condition::LastUpdated { prefix, low, high }
    } else {
        Condition::Date { prefix, low, high }
    })
}

fn number_condition(key: &str, value: &str) -> Result<Condition> {
    let mut parts = value.splitn(3, '|');
    let number = parts.next().unwrap_or("");
    let system = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let code = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let (prefix, digits) = prefix_of(number);
    // FHIR numbers are plain decimals: no exponent, no inf or NaN.
    let v: f64 = digits
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-'))
        .ok_or_else(|| bad(key, &format!("'{number}' is not a decimal number")))?;
    // The implicit range of a decimal is half a unit of its last digit on each side (5.4 covers 5.35..5.45).
    let decimals = digits.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
    let half = 0.5 * 10f64.powi(-decimals);
    Ok(Condition::Quantity {
        prefix,
        value: v,
        low: v - half,
        high: v + half,
        system,
        code,
    })
}

fn clause(
    name: &str,
    kind: Kind,
    modifier: Option<&str>,
    value: &str,
    key: &str,
    base: &str,
    now: i64,
) -> Result<Clause> {
    let values = alternatives(key, value)?;
    let mut negate = false;
    let mut param = name.to_owned();
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(bad(key, "must be true or false")),
        };
        let template = match kind {
            Kind::Token | Kind::Uri => Condition::Token {
                system: None,
                code: None,
            },
            Kind::String => Condition::TextExact(String::new()),
            Kind::Date => Condition::Date {
                prefix: Prefix::Eq,
                low: 0,
                high: 0,
            },
            Kind::Reference => Condition::Reference(String::new()),
            Kind::Quantity | Kind::Number => Condition::Quantity {
                prefix: Prefix::Eq,
                value: 0.0,
                low: 0.0,
                high: 0.0,
                system: None,
                code: None,
            },
        };
        return Ok(Clause {
            param,
            any_of: vec![Condition::Missing(missing), template],
            negate: false,
        });
    }
    let any_of: Vec<Condition> = match (kind, modifier) {
        (Kind::Token, None | Some("not")) => {
            negate = modifier == Some("not");
            values.iter().map(|v| token(v)).collect()
        }
        (Kind::Uri, None) => values
            .iter()
            .map(|v| Condition::Token {
                system: None,
                code: Some(v.clone()),
            })
            .collect(),
        (Kind::String, None) => values
            .iter()
            .map(|v| Condition::TextStarts(clip(normalize(v))))
            .collect(),
        (Kind::String, Some("exact")) => values.iter().map(|v| Condition::TextExact(clip(v.clone()))).collect(),
        (Kind::String, Some("contains")) => values
            .iter()
            .map(|v| Condition::TextContains(clip(normalize(v))))
            .collect(),
        (Kind::Date, None) => values
            .iter()
            .map(|v| date_condition(key, v, false, now))
            .collect::<Result<_>>()?,
        (Kind::Quantity | Kind::Number, None) => {
            values.iter().map(|v| number_condition(key, v)).collect::<Result<_>>()?
        }
        (Kind::Reference, Some("identifier")) => {
            param = format!("{name}:identifier");
            values.iter().map(|v| token(v)).collect()
        }
        (Kind::Reference, None) => values.iter().flat_map(|v| reference(name, v, None, base)).collect(),
        (Kind::Reference, Some(t)) if t.starts_with(|c: char| c.is_ascii_uppercase()) => {
            values.iter().flat_map(|v| reference(name, v, Some(t), base)).collect()
        }
        (_, Some(m)) => {
            return Err(Error::NotSupported(format!(
                "modifier :{m} is not supported for {} parameter {name}",
                kind.as_str()
            )));
        }
    };
    Ok(Clause { param, any_of, negate })
}

fn token(value: &str) -> Condition {
    let (system, code) = match value.split_once('|') {
        None => (None, Some(value)),
        Some(("", code)) => (Some(None), Some(code)),
        Some((system, "")) => (Some(Some(system)), None),
        Some((system, code)) => (Some(Some(system)), Some(code)),
    };
    Condition::Token {
        system: system.map(|s| s.map(|s| clip(s.to_owned()))),
        code: code.map(|c| clip(c.to_owned())),
    }
}

fn reference(name: &str, value: &str, type_modifier: Option<&str>, base: &str) -> Vec<Condition> {
    let local = local_reference(value, base);
    if local.contains('/') {
        return vec![Condition::Reference(local)];
    }
    let types: Vec<&str> = match (type_modifier, name) {
        (Some(t), _) => vec![t],
        (None, "patient" | "beneficiary") => vec!["Patient"],
        (None, "practitioner") => vec!["Practitioner"],
        (None, "organization" | "custodian" | "service-provider" | "partof") => {
            vec!["Organization"]
        }
        (None, "encounter") => vec!["Encounter"],
        (None, _) => BARE_ID_TYPES.to_vec(),
    };
    types
        .into_iter()
        .map(|t| Condition::Reference(format!("{t}/{local}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(rtype: &str, q: &[(&str, &str)]) -> Result<SearchRequest> {
        let registry = Registry::new(&[]).unwrap();
        let params: Vec<(String, String)> = q.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        parse(
            rtype,
            &params,
            &registry,
            Limits {
                default_count: 50,
                max_count: 1000,
            },
            "http://x/fhir",
            0,
        )
    }

    #[test]
    fn parses_the_common_search_shapes() {
        let r = req(
            "Observation",
            &[
                ("patient", "1"),
                ("category", "laboratory"),
                ("date", "ge2024-01"),
                ("status", "final,amended"),
                ("_sort", "-date"),
                ("_count", "5000"),
            ],
        )
        .unwrap();
        assert_eq!(r.query.count, 1000);
        assert_eq!(r.query.patient.as_deref(), Some("1"));
        assert_eq!(
            r.query.clauses[0].any_of,
            vec![Condition::Reference("Patient/1".into())]
        );
        assert_eq!(r.query.clauses[3].any_of.len(), 2);
        assert!(matches!(
            r.query.clauses[2].any_of[0],
            Condition::Date { prefix: Prefix::Ge, .. }
        ));
        assert_eq!(
            r.query.sort[0],
            Sort {
                key: SortKey::Date("date".into()),
                descending: true
            }
        );
        let t = req(
            "Observation",
            &[
                ("code", "http://loinc.org|718-7"),
                ("value-quantity", "gt5.4|http://unitsofmeasure.org|g/dL"),
            ],
        )
        .unwrap();
        assert_eq!(
            t.query.clauses[0].any_of[0],
            Condition::Token {
                system: Some(Some("http://loinc.org".into())),
                code: Some("718-7".into())
            }
        );
        assert!(matches!(
            t.query.clauses[1].any_of[0],
            Condition::Quantity { prefix: Prefix::Gt, .. }
        ));
        let s = req(
            "Patient",
            &[("name:contains", "Zoë"), ("foo", "bar"), ("subject:identifier", "x")],
        )
        .unwrap();
        assert_eq!(s.query.clauses[0].any_of[0], Condition::TextContains("zoe".into()));
        assert_eq!(s.ignored.len(), 1);
        assert!(req("Observation", &[("date", "yesterday")]).is_err());
        assert!(req("Observation", &[("code:text", "x")]).is_err());
        assert!(req("Observation", &[("_count", "-1")]).is_err());
        assert!(req("Observation", &[("value-quantity", "inf")]).is_err());
        assert!(req("Observation", &[("value-quantity", "1e5")]).is_err());
        assert!(req("Observation", &[("_id:missing", "true")]).is_err());
        assert!(req("Observation", &[("_offset", "9223372036854775807")]).is_err());
        assert!(req("Observation", &[("code", &vec!["a"; 101].join(","))]).is_err());
        assert_eq!(split_or(r"a\,b,c"), vec!["a,b".to_owned(), "c".to_owned()]);
    }
}
