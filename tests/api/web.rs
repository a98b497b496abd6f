//! A browser stand-in for the portal tests: keeps cookies, does not follow redirects (tests check where they
//! go), and fills forms from the page the way a person would: with the hidden fields the page carries.

use std::collections::BTreeMap;

pub struct Web {
    client: reqwest::Client,
    /// `http://127.0.0.1:port` (no trailing slash).
    pub origin: String,
    pub cookies: BTreeMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Page {
    /// The value of hidden input `name` in the page.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        Some(self.body[start..].split('"').next()?.replace("&amp;", "&"))
    }

    /// What a browser would send from the page's forms besides what the person types: every hidden input and
    /// every ticked checkbox (first of each name).
    pub fn form_fields(&self) -> Vec<(String, String)> {
        let attr = |tag: &str, name: &str| {
            let marker = format!(" {name}=\"");
            tag.find(&marker).map(|i| {
                tag[i + marker.len()..]
                    .split('"')
                    .next()
                    .unwrap_or_default()
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
            })
        };
        let mut fields: Vec<(String, String)> = Vec::new();
        for chunk in self.body.split("<input").skip(1) {
            let tag = chunk.split('>').next().unwrap_or_default();
            let kind = attr(tag, "type").unwrap_or_default();
            let wanted = kind == "hidden" || (kind == "checkbox" && tag.contains(" checked"));
            if let (true, Some(name), Some(value)) = (wanted, attr(tag, "name"), attr(tag, "value"))
                && !fields.iter().any(|(n, _)| *n == name)
            {
                fields.push((name, value));
            }
        }
        fields
    }

    /// The page's text without tags, whitespace collapsed, entities for quotes undone.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in self.body.chars() {
            match c {
                '<' => {
                    in_tag = true;
                    out.push(' ');
                }
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The error shown next to field `name` (the element after its input), if any.
    pub fn field_error(&self, name: &str) -> Option<String> {
        let start = self.body.find(&format!("id=\"{name}-error\""))?;
        let rest = &self.body[start..];
        let text = rest[rest.find('>')? + 1..].split('<').next()?;
        Some(text.replace("&quot;", "\""))
    }
}

impl Web {
    pub fn new(origin: &str) -> Web {
        Web {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            origin: origin.trim_end_matches('/').to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.origin)
        }
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Page {
            status,
            headers,
            location,
            set_cookies,
            body: response.text().await.unwrap_or_default(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self
            .client
            .get(self.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.finish(r).await
    }

    /// GETs `path` and returns the status, content type and raw bytes (downloads).
    pub async fn get_bytes(&mut self, path: &str) -> (u16, String, Vec<u8>) {
        let r = self
            .client
            .get(self.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        let kind = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, kind, r.bytes().await.expect("body").to_vec())
    }

    /// Posts `fields` to `action` as a form, raw (the caller adds `csrf` or leaves it out).
    pub async fn post_raw(&mut self, action: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let r = self
            .client
            .post(self.url(action))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        self.finish(r).await
    }

    /// Submits a form of `page`: its hidden fields and ticked boxes ([`Page::form_fields`]), with `fields`
    /// added or replacing them.
    pub async fn submit(&mut self, page: &Page, action: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(String, String)> = page
            .form_fields()
            .into_iter()
            .filter(|(n, _)| !fields.iter().any(|(k, _)| k == n))
            .collect();
        all.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post_raw(action, &refs).await
    }
}
