//! One recipient's own copy of a message: its signed links written into
//! the content. With click tracking every http(s) link of the html leads
//! through `/t/c/{token}` (not `mailto:` and other schemes, not the
//! unsubscribe link, not a link marked `data-posthorn-notrack`); with open
//! tracking a 1×1 pixel at `/t/o/{token}` closes the html; a template's
//! `{{ unsubscribe_url }}` becomes the recipient's unsubscribe link.
//!
//! The html is scanned, not parsed into a tree: tags and their attributes
//! are read as a browser tokenises them (quoted and unquoted values,
//! comments, raw text inside `<script>` and `<style>`), and only the
//! `href` values of `<a>` and `<area>` are replaced; every other byte is
//! kept as it was.

use std::borrow::Cow;

use crate::domain::links::{Links, UNSUBSCRIBE_URL_MARK};
use crate::domain::messages::Message;

/// The attribute that keeps a link as it is written.
const NO_TRACK: &str = "data-posthorn-notrack";

/// What one recipient's copy puts in place of the message's own.
#[derive(Clone, Debug)]
pub struct Personal<'a> {
    /// The recipient's one-click unsubscribe link (RFC 8058): written as
    /// `List-Unsubscribe` with `List-Unsubscribe-Post`, in place of any
    /// `List-Unsubscribe` header the sender gave.
    pub unsubscribe_url: Option<String>,
    /// The `mailto:` form of the unsubscribe link, written after it in
    /// `List-Unsubscribe` when configured.
    pub unsubscribe_mailto: Option<String>,
    /// The html with the recipient's links; empty for a text-only message.
    pub html: Cow<'a, str>,
    /// The text with the recipient's unsubscribe link.
    pub text: Cow<'a, str>,
}

impl Personal<'_> {
    /// The `List-Unsubscribe` header's value: the one-click link, then the
    /// `mailto:` form when there is one.
    pub fn list_unsubscribe(&self) -> Option<String> {
        let url = self.unsubscribe_url.as_ref()?;
        Some(match &self.unsubscribe_mailto {
            Some(mailto) => format!("<{url}>, <{mailto}>"),
            None => format!("<{url}>"),
        })
    }
}

/// The copy of `message` for `recipient` (its address as stored), with the
/// links the message asks for.
pub fn personal<'a>(message: &'a Message, links: &Links, recipient: &str) -> Personal<'a> {
    let unsubscribe_url = message
        .unsubscribe
        .then(|| links.unsubscribe_url(&message.id, recipient));
    let unsubscribe_mailto = message
        .unsubscribe
        .then(|| links.unsubscribe_mailto(&message.id, recipient))
        .flatten();
    let mut html = Cow::Borrowed(message.html.as_str());
    if message.track_clicks && !html.is_empty() {
        html = Cow::Owned(rewrite_links(&html, |destination| {
            links.click_url(&message.id, recipient, destination)
        }));
    }
    if let Some(url) = &unsubscribe_url {
        html = with_link(html, url);
    }
    if message.track_opens && !html.is_empty() {
        html = Cow::Owned(with_pixel(&html, &links.open_url(&message.id, recipient)));
    }
    let text = match &unsubscribe_url {
        Some(url) => with_link(Cow::Borrowed(message.text.as_str()), url),
        None => Cow::Borrowed(message.text.as_str()),
    };
    Personal {
        unsubscribe_url,
        unsubscribe_mailto,
        html,
        text,
    }
}

/// `part` with the mark a template's `{{ unsubscribe_url }}` left replaced
/// by the recipient's link.
fn with_link<'a>(part: Cow<'a, str>, url: &str) -> Cow<'a, str> {
    if part.contains(UNSUBSCRIBE_URL_MARK) {
        Cow::Owned(part.replace(UNSUBSCRIBE_URL_MARK, url))
    } else {
        part
    }
}

/// `html` with the open pixel at the end of its body (or at its end, when
/// it has no `</body>`).
fn with_pixel(html: &str, url: &str) -> String {
    let pixel = format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" \
         style=\"display:block;width:1px;height:1px;border:0\">",
        escape(url)
    );
    let at = html
        .to_ascii_lowercase()
        .rfind("</body")
        .unwrap_or(html.len());
    let mut out = String::with_capacity(html.len() + pixel.len());
    out.push_str(&html[..at]);
    out.push_str(&pixel);
    out.push_str(&html[at..]);
    out
}

/// `html` with the `href` of each `<a>` and `<area>` that leads to an
/// http(s) URL replaced by `track(url)` (the URL as a browser reads it,
/// character references decoded).
fn rewrite_links(html: &str, track: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(html.len() + html.len() / 4);
    let mut kept = 0;
    let mut at = 0;
    while let Some(offset) = html[at..].find('<') {
        let start = at + offset;
        let tag = read_tag(html, start);
        at = tag.end;
        if let Some(raw_text) = tag.raw_text_end(html) {
            at = raw_text;
            continue;
        }
        if !tag.is_link() || tag.attribute(html, NO_TRACK).is_some() {
            continue;
        }
        let Some(href) = tag.attribute(html, "href") else {
            continue;
        };
        let destination = decode(html[href.value.clone()].trim());
        if !is_web(&destination) {
            continue;
        }
        let tracked = escape(&track(&destination));
        out.push_str(&html[kept..href.value.start]);
        if href.quoted {
            out.push_str(&tracked);
        } else {
            out.push('"');
            out.push_str(&tracked);
            out.push('"');
        }
        kept = href.value.end;
    }
    out.push_str(&html[kept..]);
    out
}

/// Whether `url` is an http or https URL that a redirect can lead to.
fn is_web(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && url::Url::parse(url).is_ok()
}

/// One attribute of a tag: its name and where its value is.
#[derive(Clone, Debug)]
struct Attribute {
    name: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
    quoted: bool,
}

/// A tag as the scanner read it.
#[derive(Debug)]
struct Tag {
    /// The lowercase name; empty for a comment, a closing tag, a
    /// declaration or a `<` that opens no tag.
    name: String,
    attributes: Vec<Attribute>,
    /// Just past the tag.
    end: usize,
}

impl Tag {
    fn is_link(&self) -> bool {
        self.name == "a" || self.name == "area"
    }

    fn attribute(&self, html: &str, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| html[a.name.clone()].eq_ignore_ascii_case(name))
    }

    /// For `<script>` and `<style>`, whose content is not html: where their
    /// content ends.
    fn raw_text_end(&self, html: &str) -> Option<usize> {
        if self.name != "script" && self.name != "style" {
            return None;
        }
        let closing = format!("</{}", self.name);
        let rest = html[self.end..].to_ascii_lowercase();
        Some(rest.find(&closing).map_or(html.len(), |i| self.end + i))
    }
}

/// Reads the tag that starts at `start` (a `<`).
fn read_tag(html: &str, start: usize) -> Tag {
    let bytes = html.as_bytes();
    let after = start + 1;
    let not_a_tag = |end: usize| Tag {
        name: String::new(),
        attributes: Vec::new(),
        end,
    };
    if html[after..].starts_with("!--") {
        let end = html[after + 3..]
            .find("-->")
            .map_or(html.len(), |i| after + 3 + i + 3);
        return not_a_tag(end);
    }
    match bytes.get(after) {
        Some(b) if b.is_ascii_alphabetic() => {}
        // A closing tag, a declaration or a processing instruction: up to
        // its `>`.
        Some(b'/' | b'!' | b'?') => {
            return not_a_tag(
                html[after..]
                    .find('>')
                    .map_or(html.len(), |i| after + i + 1),
            );
        }
        // A `<` that is text.
        _ => return not_a_tag(after),
    }
    let mut at = after;
    while at < bytes.len() && !is_space(bytes[at]) && bytes[at] != b'>' && bytes[at] != b'/' {
        at += 1;
    }
    let name = html[after..at].to_ascii_lowercase();
    let mut attributes = Vec::new();
    loop {
        while at < bytes.len() && (is_space(bytes[at]) || bytes[at] == b'/') {
            at += 1;
        }
        // A tag the html ends inside is no tag (browsers drop it).
        if at >= bytes.len() {
            return not_a_tag(html.len());
        }
        if bytes[at] == b'>' {
            at += 1;
            break;
        }
        let name_start = at;
        // A name runs to a space, `/`, `>` or `=` (a leading `=` is part
        // of it, as browsers read it).
        at += 1;
        while at < bytes.len() && !is_space(bytes[at]) && !b"/>=".contains(&bytes[at]) {
            at += 1;
        }
        let name = name_start..at;
        let mut look = at;
        while look < bytes.len() && is_space(bytes[look]) {
            look += 1;
        }
        if bytes.get(look) != Some(&b'=') {
            attributes.push(Attribute {
                name,
                value: at..at,
                quoted: true,
            });
            continue;
        }
        at = look + 1;
        while at < bytes.len() && is_space(bytes[at]) {
            at += 1;
        }
        let (value, quoted) = match bytes.get(at) {
            Some(&quote @ (b'"' | b'\'')) => {
                let open = at + 1;
                let close = html[open..]
                    .find(quote as char)
                    .map_or(html.len(), |i| open + i);
                at = (close + 1).min(html.len());
                (open..close, true)
            }
            _ => {
                let open = at;
                while at < bytes.len() && !is_space(bytes[at]) && bytes[at] != b'>' {
                    at += 1;
                }
                (open..at, false)
            }
        };
        attributes.push(Attribute {
            name,
            value,
            quoted,
        });
    }
    Tag {
        name,
        attributes,
        end: at,
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// An attribute value with its character references decoded (the named
/// ones a URL uses, and numeric ones); an unknown reference stays as
/// written.
fn decode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '#')
            .map_or(rest.len(), |j| j + 1);
        let name = &rest[1..end];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name.strip_prefix('#').and_then(|n| {
                match n.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => n.parse().ok(),
                }
                .and_then(char::from_u32)
            }),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = rest[end..].strip_prefix(';').unwrap_or(&rest[end..]);
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` safe inside a quoted attribute value.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tracks by wrapping the destination, so a test sees what was read.
    fn tracked(html: &str) -> String {
        rewrite_links(html, |url| format!("T[{url}]"))
    }

    #[test]
    fn web_links_are_rewritten_and_the_rest_is_kept_byte_for_byte() {
        let html = "<p>Hi <A class=x HREF=\"https://shop.example/a?x=1&amp;y=2\">order</A>, \
                    <a href='http://example.com/b'>b</a> <a href=https://example.com/c>c</a>\
                    <area shape=rect href=\" https://example.com/map \"></p>";
        assert_eq!(
            tracked(html),
            "<p>Hi <A class=x HREF=\"T[https://shop.example/a?x=1&amp;y=2]\">order</A>, \
             <a href='T[http://example.com/b]'>b</a> <a href=\"T[https://example.com/c]\">c</a>\
             <area shape=rect href=\"T[https://example.com/map]\"></p>"
        );
    }

    #[test]
    fn mail_links_marked_links_and_other_schemes_are_left_alone() {
        let html = "<a href=\"mailto:help@example.com\">m</a>\
                    <a data-posthorn-notrack href=\"https://example.com/keep\">k</a>\
                    <a href=\"javascript:alert(1)\">j</a><a href=\"#top\">t</a>\
                    <a href=\"posthorn-unsubscribe-url-9d41c7e2\">u</a><a name=x>n</a>\
                    <link href=\"https://example.com/style.css\"><a href=\"http://exa mple.com/\">x</a>";
        assert_eq!(tracked(html), html);
    }

    #[test]
    fn links_in_comments_scripts_styles_and_attribute_values_are_not_links() {
        let html = "<!-- <a href=\"https://example.com/1\"> --><script>var s = '<a href=\"https://example.com/2\">';</script>\
                    <style>a[href^=\"http\"] { color: red }</style>\
                    <img alt='<a href=\"https://example.com/3\">'> 1 < 2 <a href=\"https://example.com/4\">4</a>";
        let out = tracked(html);
        assert_eq!(out.matches("T[").count(), 1, "{out}");
        assert!(out.ends_with("<a href=\"T[https://example.com/4]\">4</a>"));
    }

    #[test]
    fn the_replacement_is_escaped_for_its_attribute() {
        let out = rewrite_links("<a href=\"https://example.com/\">x</a>", |_| {
            "https://t.example/c?a=1&b=\"2\"".into()
        });
        assert_eq!(
            out,
            "<a href=\"https://t.example/c?a=1&amp;b=&quot;2&quot;\">x</a>"
        );
    }

    #[test]
    fn an_unfinished_tag_ends_the_scan_without_a_panic() {
        for html in [
            "<a href=\"https://example.com/",
            "<a href=",
            "<a",
            "<",
            "<!--",
            "a &",
        ] {
            assert_eq!(tracked(html), html);
        }
    }

    #[test]
    fn character_references_are_read_as_a_browser_reads_them() {
        assert_eq!(
            decode("a&amp;b&#38;c&#x26;d&lt;&unknown;e&"),
            "a&b&c&d<&unknown;e&"
        );
    }

    #[test]
    fn the_pixel_closes_the_body() {
        assert_eq!(
            with_pixel("<html><BODY>Hi</BODY></html>", "https://t.example/o"),
            "<html><BODY>Hi<img src=\"https://t.example/o\" width=\"1\" height=\"1\" alt=\"\" \
             style=\"display:block;width:1px;height:1px;border:0\"></BODY></html>"
        );
        assert!(with_pixel("<p>Hi</p>", "u").starts_with("<p>Hi</p><img src=\"u\""));
    }
}
