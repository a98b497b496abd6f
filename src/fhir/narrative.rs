//! txt-1/txt-2: a narrative is limited XHTML. We check it against allowlists of elements and attributes (a
//! blocklist always misses a way in: `<img/src=x/onerror=…>`, entity-encoded `javascript:`), since portals
//! and EHRs show narratives to people.

/// The XHTML elements FHIR narratives may use.
const ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "address",
    "b",
    "bdo",
    "big",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "map",
    "area",
    "ol",
    "p",
    "pre",
    "q",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "ul",
    "var",
    "s",
    "u",
    "center",
    "font",
    "label",
];

/// The attributes they may carry (no event handlers, no forms).
const ATTRIBUTES: &[&str] = &[
    "xmlns",
    "xml:lang",
    "lang",
    "dir",
    "class",
    "id",
    "style",
    "title",
    "href",
    "name",
    "src",
    "alt",
    "width",
    "height",
    "border",
    "colspan",
    "rowspan",
    "align",
    "valign",
    "cellpadding",
    "cellspacing",
    "summary",
    "scope",
    "headers",
    "abbr",
    "axis",
    "char",
    "charoff",
    "span",
    "start",
    "type",
    "value",
    "cite",
    "datetime",
    "accesskey",
    "tabindex",
    "rel",
    "rev",
    "hreflang",
    "charset",
    "shape",
    "coords",
    "longdesc",
    "usemap",
    "ismap",
    "size",
    "noshade",
    "clear",
    "nowrap",
    "bgcolor",
    "frame",
    "rules",
    "compact",
    "color",
    "face",
    "xmlns:xhtml",
];

/// The first problem with a narrative `div`, if any.
pub fn check(div: &str) -> Option<String> {
    if !div.trim_start().starts_with("<div") {
        return Some("the narrative must be an XHTML <div>".into());
    }
    let mut rest = div;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        if let Some(after) = rest.strip_prefix("!--") {
            rest = after.split_once("-->").map_or("", |(_, r)| r);
            continue;
        }
        if rest.starts_with('!') || rest.starts_with('?') {
            return Some("the narrative may not contain declarations or processing instructions".into());
        }
        let closing = rest.starts_with('/');
        let tag = rest.trim_start_matches('/');
        let name_len = tag
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
            .unwrap_or(tag.len());
        let name = tag[..name_len].to_ascii_lowercase();
        let name = name.strip_prefix("xhtml:").unwrap_or(&name);
        if !ELEMENTS.contains(&name) {
            return Some(format!("the element <{name}> is not allowed in a narrative"));
        }
        let Some(end) = tag.find('>') else {
            return Some("an unclosed tag".into());
        };
        if !closing && let Some(problem) = attributes(&tag[name_len..end]) {
            return Some(problem);
        }
        rest = &tag[end + 1..];
    }
    None
}

/// Checks `name="value"` pairs of one tag.
fn attributes(mut s: &str) -> Option<String> {
    loop {
        s = s.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if s.is_empty() {
            return None;
        }
        let name_len = s
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
            .unwrap_or(s.len());
        let name = s[..name_len].to_ascii_lowercase();
        if !ATTRIBUTES.contains(&name.as_str()) {
            return Some(format!("the attribute '{name}' is not allowed in a narrative"));
        }
        s = s[name_len..].trim_start();
        let mut value = "";
        if let Some(after) = s.strip_prefix('=') {
            let after = after.trim_start();
            let (v, r) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => after[1..].split_once(q).unwrap_or((&after[1..], "")),
                _ => after.split_at(after.find(char::is_whitespace).unwrap_or(after.len())),
            };
            value = v;
            s = r;
        }
        let plain = decode(value);
        let dangerous = |scheme: &str| plain.starts_with(scheme);
        if matches!(name.as_str(), "href" | "src" | "longdesc" | "cite" | "usemap")
            && (dangerous("javascript:")
                || dangerous("vbscript:")
                || (dangerous("data:") && !plain.starts_with("data:image/")))
        {
            return Some(format!("the {name} '{value}' is not allowed in a narrative"));
        }
        if name == "style" && (plain.contains("expression(") || plain.contains("javascript:") || plain.contains("url("))
        {
            return Some("the style may not load or run anything".into());
        }
    }
}

/// Lower-case, with numeric character references decoded and whitespace and control characters dropped:
/// how a browser reads a URL scheme.
fn decode(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp + 1..];
        let end = rest.find(';').unwrap_or(rest.len());
        let entity = &rest[..end];
        let code = entity
            .strip_prefix("#x")
            .or_else(|| entity.strip_prefix("#X"))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()));
        match (code.and_then(char::from_u32), entity) {
            (Some(c), _) => out.push(c),
            (None, "colon") => out.push(':'),
            (None, "tab" | "newline") => {}
            _ => {
                out.push('&');
                continue;
            }
        }
        rest = rest.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out.chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn allows_ordinary_narratives_and_refuses_active_content() {
        let ok = r#"<div xmlns="http://www.w3.org/1999/xhtml"><p style="color:red">Hb <b>low</b></p><!-- note --><table border="1"><tr><td colspan="2">x</td></tr></table><a href="http://x">link</a><img src="data:image/png;base64,AA" alt=""/></div>"#;
        assert_eq!(check(ok), None);
        for bad in [
            r#"<div><script>alert(1)</script></div>"#,
            r#"<div><img/src="x"/onerror=alert(1)></div>"#,
            r#"<div><img src=x onerror =alert(1)></div>"#,
            r#"<div><a href="jav&#x61;script:alert(1)">x</a></div>"#,
            r#"<div><a href=" java	script:alert(1)">x</a></div>"#,
            r#"<div><a href="data:text/html,<script>">x</a></div>"#,
            r#"<div><iframe src="x"></iframe></div>"#,
            r#"<div><p style="background:url(x)">x</p></div>"#,
            r#"<p>not a div</p>"#,
        ] {
            assert!(check(bad).is_some(), "{bad}");
        }
    }
}
