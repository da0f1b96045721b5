//! Plain text from rendered HTML, for templates without a text part: links
//! kept as `text (url)`, headings set apart, list items as `- item`,
//! paragraphs separated by blank lines, everything else's tags dropped.

/// Converts rendered HTML into readable plain text.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut href: Vec<Option<String>> = Vec::new();
    let mut link_text_start: Vec<usize> = Vec::new();
    let mut skip_depth = 0usize;
    // A hidden element (the preheader) is skipped up to its closing tag.
    let mut hidden: Option<String> = None;
    while let Some(open) = rest.find('<') {
        if skip_depth == 0 {
            push_text(&mut out, &rest[..open]);
        }
        let after = &rest[open..];
        let Some(close) = after.find('>') else {
            break;
        };
        let tag = &after[1..close];
        rest = &after[close + 1..];
        if tag.starts_with("!--") {
            // Comments (conditional comments included) are dropped whole.
            if let Some(end) = after.find("-->") {
                rest = &after[end + 3..];
            }
            continue;
        }
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(tag_name) = &hidden {
            if closing && *tag_name == name {
                hidden = None;
                skip_depth = skip_depth.saturating_sub(1);
            }
            continue;
        }
        if !closing
            && tag
                .to_ascii_lowercase()
                .replace(' ', "")
                .contains("display:none")
        {
            hidden = Some(name);
            skip_depth += 1;
            continue;
        }
        match (name.as_str(), closing) {
            ("head" | "style" | "script" | "title", false) => skip_depth += 1,
            ("head" | "style" | "script" | "title", true) => {
                skip_depth = skip_depth.saturating_sub(1)
            }
            _ if skip_depth > 0 => {}
            ("br", _) => out.push('\n'),
            ("p" | "div" | "table" | "tr" | "ul" | "ol" | "blockquote", _) => block_break(&mut out),
            ("h1" | "h2" | "h3" | "h4", false) => block_break(&mut out),
            ("h1" | "h2" | "h3" | "h4", true) => {
                let line_start = out.trim_end().rfind('\n').map_or(0, |i| i + 1);
                let width = out[line_start..].trim_end().chars().count();
                out.truncate(out.trim_end().len());
                out.push('\n');
                out.push_str(&(if name == "h1" { "=" } else { "-" }).repeat(width.max(3)));
                block_break(&mut out);
            }
            ("li", false) => {
                line_break(&mut out);
                out.push_str("- ");
            }
            ("td" | "th", true) if !out.ends_with([' ', '\n']) => out.push(' '),
            ("hr", _) => {
                block_break(&mut out);
                out.push_str("----------------------------------------");
                block_break(&mut out);
            }
            ("a", false) => {
                href.push(attribute(tag, "href"));
                link_text_start.push(out.len());
            }
            ("a", true) => {
                let url = href.pop().flatten();
                let start = link_text_start.pop().unwrap_or(out.len());
                if let Some(url) = url.filter(|u| !u.starts_with('#')) {
                    let text = out[start..].trim().to_owned();
                    if text.is_empty() {
                        out.push_str(&url);
                    } else if text != url && !url.starts_with("mailto:") {
                        out.push_str(&format!(" ({url})"));
                    }
                }
            }
            _ => {}
        }
    }
    if skip_depth == 0 {
        push_text(&mut out, rest);
    }
    tidy(&out)
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let at = lower.find(&format!("{name}="))? + name.len() + 1;
    let value = &tag[at..];
    let value = match value.chars().next()? {
        quote @ ('"' | '\'') => value[1..].split(quote).next()?,
        _ => value.split([' ', '>']).next()?,
    };
    Some(decode_entities(value))
}

fn push_text(out: &mut String, text: &str) {
    let decoded = decode_entities(text);
    for word in decoded.split_whitespace() {
        if !out.is_empty() && !out.ends_with([' ', '\n']) {
            out.push(' ');
        }
        out.push_str(word);
    }
    if decoded.ends_with(char::is_whitespace) && !out.ends_with([' ', '\n']) && !out.is_empty() {
        out.push(' ');
    }
}

fn line_break(out: &mut String) {
    let trimmed = out.trim_end_matches(' ').len();
    out.truncate(trimmed);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

fn block_break(out: &mut String) {
    line_break(out);
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|end| {
            let entity = &tail[1..end];
            let c = match entity {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "#39" | "apos" => '\'',
                "nbsp" | "#160" => ' ',
                "mdash" => '—',
                "ndash" => '–',
                "hellip" => '…',
                "copy" => '©',
                _ => {
                    let number = entity.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)?
                }
            };
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Trims each line and keeps at most one blank line between blocks.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_links_headings_and_lists_readable() {
        let html = r#"<html><head><title>x</title><style>p{color:red}</style></head><body>
            <h1>Reset your password</h1>
            <p>Hi Alex,<br>someone asked to reset   your password.</p>
            <table><tr><td><a href="https://example.com/reset?a=1&amp;b=2" style="x">Reset password</a></td></tr></table>
            <ul><li>First</li><li>Second &amp; last</li></ul>
            <p>Questions? <a href="mailto:help@example.com">help@example.com</a></p>
            <!--[if mso]><p>outlook only</p><![endif]-->
            <div style="display: none; max-height:0">hidden preheader</div>
        </body></html>"#;
        let text = html_to_text(html);
        assert_eq!(
            text,
            "Reset your password\n===================\n\nHi Alex,\nsomeone asked to reset your password.\n\nReset password (https://example.com/reset?a=1&b=2)\n\n- First\n- Second & last\n\nQuestions? help@example.com\n"
        );
    }
}
