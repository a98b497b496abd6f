//! The small FHIRPath subset that search parameter expressions use: `Type.a.b`, unions with `|`,
//! choice elements (`Observation.effective`, `(Patient.deceased as dateTime)`, `.ofType(Quantity)`),
//! `.where(system='email')` and `.where(resolve() is Patient)`. Anything else is refused when the
//! definition is loaded, so a definition never silently indexes nothing.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// An element; `choice` restricts a `[x]` element to one type (`dateTime` → `deceasedDateTime`).
    Field { name: String, choice: Option<String> },
    /// `where(field='literal')`
    WhereEq { field: String, value: String },
    /// `where(resolve() is Type)`: a Reference whose target has this type.
    RefType(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    steps: Vec<Step>,
}

/// Parses an expression for resource type `rtype` into its union members.
pub fn parse(expr: &str, rtype: &str) -> Result<Vec<Path>, String> {
    split_top(expr, '|')
        .into_iter()
        .map(|alt| parse_one(alt.trim(), rtype))
        .collect()
}

fn parse_one(expr: &str, rtype: &str) -> Result<Path, String> {
    let mut expr = expr;
    while expr.starts_with('(') && expr.ends_with(')') {
        expr = &expr[1..expr.len() - 1];
    }
    let (expr, as_type) = match expr.split_once(" as ") {
        Some((e, t)) => (e.trim(), Some(t.trim().to_owned())),
        None => (expr, None),
    };
    let segments = split_top(expr, '.');
    let (head, rest) = segments.split_first().ok_or("empty expression")?;
    if *head != rtype && *head != "Resource" && *head != "DomainResource" {
        return Err(format!("expression '{expr}' does not start with {rtype}"));
    }
    let mut steps = Vec::new();
    for seg in rest {
        if let Some(inner) = seg.strip_prefix("where(").and_then(|s| s.strip_suffix(')')) {
            if let Some(t) = inner.strip_prefix("resolve() is ") {
                steps.push(Step::RefType(t.trim().to_owned()));
            } else if let Some((field, value)) = inner.split_once('=') {
                let value = value.trim().trim_matches('\'');
                steps.push(Step::WhereEq {
                    field: field.trim().to_owned(),
                    value: value.to_owned(),
                });
            } else {
                return Err(format!("unsupported where() in '{expr}'"));
            }
        } else if let Some(t) = seg.strip_prefix("ofType(").or_else(|| seg.strip_prefix("as(")) {
            let t = t.strip_suffix(')').ok_or("unclosed ofType(")?;
            match steps.last_mut() {
                Some(Step::Field { choice, .. }) => *choice = Some(t.to_owned()),
                _ => return Err(format!("ofType() must follow an element in '{expr}'")),
            }
        } else if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            steps.push(Step::Field {
                name: (*seg).to_owned(),
                choice: None,
            });
        } else {
            return Err(format!("unsupported FHIRPath '{seg}' in '{expr}'"));
        }
    }
    if let Some(t) = as_type {
        match steps.last_mut() {
            Some(Step::Field { choice, .. }) => *choice = Some(t),
            _ => return Err(format!("'as' must follow an element in '{expr}'")),
        }
    }
    Ok(Path { steps })
}

/// Splits at `sep` outside parentheses and quotes.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut quoted, mut start, mut out) = (0i32, false, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && depth == 0 && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl Path {
    /// Every node the path reaches in `root` (arrays are flattened).
    pub fn eval<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut nodes = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for node in nodes {
                match step {
                    Step::Field { name, choice } => {
                        if let Value::Object(map) = node {
                            for (key, value) in map {
                                if field_matches(key, name, choice.as_deref()) {
                                    push_flat(&mut next, value);
                                }
                            }
                        }
                    }
                    Step::WhereEq { field, value } => {
                        if node.get(field).and_then(Value::as_str) == Some(value) {
                            next.push(node);
                        }
                    }
                    Step::RefType(t) => {
                        let reference = node.get("reference").and_then(Value::as_str).unwrap_or("");
                        let local = reference.rsplit('/').nth(1) == Some(t.as_str());
                        if local || node.get("type").and_then(Value::as_str) == Some(t.as_str()) {
                            next.push(node);
                        }
                    }
                }
            }
            nodes = next;
        }
        nodes
    }
}

fn push_flat<'a>(out: &mut Vec<&'a Value>, value: &'a Value) {
    match value {
        Value::Array(items) => out.extend(items.iter().filter(|v| !v.is_null())),
        Value::Null => {}
        v => out.push(v),
    }
}

/// `effective` matches `effective` and `effectiveDateTime`/`effectivePeriod`…; with a choice type only that one.
pub(super) fn field_matches(key: &str, name: &str, choice: Option<&str>) -> bool {
    let Some(rest) = key.strip_prefix(name) else {
        return false;
    };
    match choice {
        Some(t) => {
            let mut chars = t.chars();
            chars.next().is_some_and(|c| rest.starts_with(c.to_ascii_uppercase())) && rest[1..] == *chars.as_str()
        }
        None => rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse;

    fn eval(expr: &str, rtype: &str, v: &serde_json::Value) -> Vec<serde_json::Value> {
        parse(expr, rtype)
            .unwrap()
            .iter()
            .flat_map(|p| p.eval(v))
            .cloned()
            .collect()
    }

    #[test]
    fn evaluates_the_search_subset() {
        let obs = json!({
            "resourceType": "Observation",
            "subject": { "reference": "Patient/1" },
            "effectivePeriod": { "start": "2020" },
            "valueQuantity": { "value": 1 },
            "category": [{ "text": "a" }, { "text": "b" }]
        });
        assert_eq!(
            eval("Observation.effective", "Observation", &obs),
            vec![json!({ "start": "2020" })]
        );
        assert_eq!(
            eval("Observation.subject.where(resolve() is Patient)", "Observation", &obs).len(),
            1
        );
        assert!(eval("Observation.subject.where(resolve() is Group)", "Observation", &obs).is_empty());
        assert_eq!(
            eval("(Observation.value as Quantity)", "Observation", &obs),
            vec![json!({ "value": 1 })]
        );
        assert!(eval("Observation.value.ofType(string)", "Observation", &obs).is_empty());
        assert_eq!(eval("Observation.category", "Observation", &obs).len(), 2);
        let pat = json!({ "telecom": [{ "system": "phone", "value": "1" }, { "system": "email", "value": "a@b" }] });
        assert_eq!(
            eval("Patient.telecom.where(system='email')", "Patient", &pat)[0]["value"],
            "a@b"
        );
        assert_eq!(eval("Patient.name | Patient.telecom", "Patient", &pat).len(), 2);
        assert!(parse("Patient.name.first()", "Patient").is_err());
        assert!(parse("Observation.code", "Patient").is_err());
    }
}
