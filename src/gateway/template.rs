//! Path templates of `google.api.http` rules, parsed by the grammar of
//! `google/api/http.proto`:
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```

use std::fmt;

/// One segment of a flattened template: variables are replaced by the
/// segments they match.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `*`: matches one non-empty segment.
    Single,
    /// `**`: matches the rest of the path (zero or more segments).
    Multi,
}

/// A variable: the field it sets and the segments it spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// The field path, for example `["filter", "status"]`.
    pub field_path: Vec<String>,
    /// Index of the first segment the variable covers.
    pub start: usize,
    /// Index one past its last segment; `None` when it ends with `**`
    /// (it then takes the rest of the path).
    pub end: Option<usize>,
}

/// A parsed path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    /// The flattened segments.
    pub segments: Vec<Segment>,
    /// The custom verb after the last `:`, if any.
    pub verb: Option<String>,
    /// The variables, in order.
    pub variables: Vec<Variable>,
    /// The template as written.
    pub source: String,
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PathTemplate {
    /// Parses `source`, or says what is wrong with it.
    pub fn parse(source: &str) -> Result<PathTemplate, String> {
        let mut parser = Parser {
            chars: source.as_bytes(),
            at: 0,
            segments: Vec::new(),
            variables: Vec::new(),
        };
        if !parser.eat(b'/') {
            return Err("a path template starts with `/`".into());
        }
        parser.segments(false)?;
        let verb = if parser.eat(b':') {
            let verb = parser.literal();
            if verb.is_empty() {
                return Err(parser.error("a verb after `:`"));
            }
            Some(verb)
        } else {
            None
        };
        if parser.at != parser.chars.len() {
            return Err(parser.error("the end of the template"));
        }
        let segments = parser.segments;
        if let Some(i) = segments.iter().position(|s| *s == Segment::Multi)
            && i + 1 != segments.len()
        {
            return Err("`**` must be the last segment of a path template".into());
        }
        Ok(PathTemplate {
            segments,
            verb,
            variables: parser.variables,
            source: source.to_owned(),
        })
    }

    /// The template's shape with variables written as `*`/`**`: two rules
    /// with the same method and shape can never be told apart.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Single => out.push('*'),
                Segment::Multi => out.push_str("**"),
            }
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }
}

struct Parser<'a> {
    chars: &'a [u8],
    at: usize,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn error(&self, expected: &str) -> String {
        match self.peek() {
            Some(c) => format!(
                "expected {expected} at position {}, found `{}`",
                self.at, c as char
            ),
            None => format!("expected {expected} at the end"),
        }
    }

    /// Reads a literal: unreserved characters and percent-escapes.
    fn literal(&mut self) -> String {
        let start = self.at;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"-._~%!$&'()+,;@".contains(&c) {
                self.at += 1;
            } else {
                break;
            }
        }
        String::from_utf8_lossy(&self.chars[start..self.at]).into_owned()
    }

    fn segments(&mut self, in_variable: bool) -> Result<(), String> {
        loop {
            self.segment(in_variable)?;
            if !self.eat(b'/') {
                return Ok(());
            }
        }
    }

    fn segment(&mut self, in_variable: bool) -> Result<(), String> {
        if self.eat(b'*') {
            if self.eat(b'*') {
                self.segments.push(Segment::Multi);
            } else {
                self.segments.push(Segment::Single);
            }
            return Ok(());
        }
        if self.peek() == Some(b'{') {
            if in_variable {
                return Err(self.error("a literal or `*` (variables do not nest)"));
            }
            return self.variable();
        }
        let literal = self.literal();
        if literal.is_empty() {
            return Err(self.error("a path segment"));
        }
        self.segments.push(Segment::Literal(literal));
        Ok(())
    }

    fn variable(&mut self) -> Result<(), String> {
        self.at += 1; // `{`
        let start = self.at;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
                self.at += 1;
            } else {
                break;
            }
        }
        let path = String::from_utf8_lossy(&self.chars[start..self.at]).into_owned();
        let field_path: Vec<String> = path.split('.').map(str::to_owned).collect();
        if path.is_empty() || field_path.iter().any(String::is_empty) {
            return Err(self.error("a field path inside `{…}`"));
        }
        let first = self.segments.len();
        if self.eat(b'=') {
            self.segments(true)?;
        } else {
            self.segments.push(Segment::Single);
        }
        if !self.eat(b'}') {
            return Err(self.error("`}`"));
        }
        let end = if self.segments.last() == Some(&Segment::Multi) {
            None
        } else {
            Some(self.segments.len())
        };
        self.variables.push(Variable {
            field_path,
            start: first,
            end,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_variables_verbs_and_wildcards() {
        let t = PathTemplate::parse("/v1/webhooks/{id}/deliveries/{delivery_id}:retry").unwrap();
        assert_eq!(t.shape(), "/v1/webhooks/*/deliveries/*:retry");
        assert_eq!(t.variables.len(), 2);
        assert_eq!(t.variables[1].field_path, vec!["delivery_id"]);
        assert_eq!((t.variables[1].start, t.variables[1].end), (4, Some(5)));

        let t = PathTemplate::parse("/v1/{name=messages/*}/events/{rest.path=**}").unwrap();
        assert_eq!(t.shape(), "/v1/messages/*/events/**");
        assert_eq!(t.variables[0].field_path, vec!["name"]);
        assert_eq!((t.variables[0].start, t.variables[0].end), (1, Some(3)));
        assert_eq!(t.variables[1].field_path, vec!["rest", "path"]);
        assert_eq!(t.variables[1].end, None);

        let t = PathTemplate::parse("/v1/messages:watch").unwrap();
        assert_eq!(t.verb.as_deref(), Some("watch"));
        assert_eq!(t.segments.len(), 2);
    }

    #[test]
    fn refuses_malformed_templates_with_a_reason() {
        for (source, reason) in [
            ("v1/x", "starts with `/`"),
            ("/v1/{id", "`}`"),
            ("/v1/{}", "field path"),
            ("/v1/{a={b}}", "do not nest"),
            ("/v1/**/x", "last segment"),
            ("/v1//x", "path segment"),
            ("/v1/x:", "verb"),
            ("/v1/x y", "end of the template"),
        ] {
            let error = PathTemplate::parse(source).unwrap_err();
            assert!(error.contains(reason), "{source}: {error}");
        }
    }
}
