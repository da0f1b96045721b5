//! The template engine: minijinja in a sandbox. No file system or network
//! (no loader: only the layout, the components and the template's own
//! parts exist), auto-escaping in HTML, a fuel budget, a recursion limit and
//! an output cap, so a hostile template fails with a clear error instead of
//! hanging or exhausting memory.

use std::collections::BTreeSet;
use std::io;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use serde_json::{Map, Value as Json};

use super::branding::Branding;
use super::text::html_to_text;
use crate::domain::links::UNSUBSCRIBE_URL_MARK;
use crate::domain::{Error, FieldViolation};

/// The shared layout every catalog template extends.
pub const LAYOUT: &str = include_str!("catalog/layout.html");
/// The shared plain-text layout (`{% extends "layout.txt" %}`).
pub const TEXT_LAYOUT: &str = include_str!("catalog/layout.txt");
/// The shared components (`{% import "components.html" as ui %}`).
pub const COMPONENTS: &str = include_str!("catalog/components.html");

/// What one part may spend rendering, in minijinja's fuel: an instruction
/// costs one, and every 64 bytes of strings or lists it makes one more
/// (charged before a known-size allocation is made, so `"x" * 10**9`
/// fails before allocating). Half a million instructions are far more than
/// an email needs; 32 MB made is 16 times [`MAX_OUTPUT`]. With 2,000,000 a
/// hostile part could make a 128 MB string, and hold a runtime thread for
/// some 80 ms doing it, before the output cap refused it.
const FUEL: u64 = 500_000;
/// Nesting depth of blocks, loops, includes and macro calls.
const RECURSION: usize = 64;
/// The largest rendered part, in bytes.
pub const MAX_OUTPUT: usize = 2 * 1024 * 1024;

/// A template's source: the subject, html and text parts (text may be
/// empty: it is then derived from the rendered html).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSource {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// A rendered email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

const PARTS: [(&str, &str); 3] = [
    ("subject", "subject.txt"),
    ("html", "body.html"),
    ("text", "body.txt"),
];

fn environment(source: &TemplateSource) -> Result<Environment<'static>, Vec<FieldViolation>> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION);
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.add_template("layout.html", LAYOUT)
        .expect("the embedded layout compiles");
    env.add_template("components.html", COMPONENTS)
        .expect("the embedded components compile");
    env.add_template("layout.txt", TEXT_LAYOUT)
        .expect("the embedded text layout compiles");
    let mut violations = Vec::new();
    for ((field, name), text) in PARTS
        .iter()
        .zip([&source.subject, &source.html, &source.text])
    {
        if let Err(error) = env.add_template_owned(*name, text.clone()) {
            violations.push(FieldViolation::new(*field, describe(&error)));
        }
    }
    if violations.is_empty() {
        Ok(env)
    } else {
        Err(violations)
    }
}

/// A template error as a person reads it: what and where.
fn describe(error: &minijinja::Error) -> String {
    let what = match error.kind() {
        ErrorKind::OutOfFuel => {
            "the template needs too much work or memory to render (an endless loop or a huge value?)".to_owned()
        }
        ErrorKind::InvalidOperation if error.to_string().contains("recursion") => {
            "the template nests too deeply (recursion limit reached)".to_owned()
        }
        ErrorKind::TemplateNotFound => format!(
            "{} (only \"layout.html\", \"layout.txt\" and \"components.html\" can be extended, included or imported)",
            error.detail().unwrap_or("template not found")
        ),
        _ => error
            .detail()
            .map(str::to_owned)
            .unwrap_or_else(|| error.kind().to_string()),
    };
    match error.line() {
        Some(line) => format!("{what} (line {line})"),
        None => what,
    }
}

/// A template's parts compiled once, to analyse and to render.
pub struct Compiled {
    env: Environment<'static>,
    derive_text: bool,
}

/// Compiles every part; the violations name the part at fault.
pub fn compile(source: &TemplateSource) -> Result<Compiled, Vec<FieldViolation>> {
    Ok(Compiled {
        env: environment(source)?,
        derive_text: source.text.trim().is_empty(),
    })
}

/// Checks that every part compiles; the violations name the part.
pub fn check(source: &TemplateSource) -> Result<(), Vec<FieldViolation>> {
    compile(source).map(|_| ())
}

/// The variables the parts of `source` use; see [`Compiled::used_variables`].
pub fn used_variables(source: &TemplateSource) -> Result<BTreeSet<String>, Vec<FieldViolation>> {
    compile(source).map(|compiled| compiled.used_variables())
}

/// Renders `source`; see [`Compiled::render`].
pub fn render(
    source: &TemplateSource,
    variables: &Map<String, Json>,
    branding: &Branding,
) -> Result<Rendered, Error> {
    compile(source)
        .map_err(Error::Validation)?
        .render(variables, branding)
}

/// The variable a template places its unsubscribe link with.
pub const UNSUBSCRIBE_URL: &str = "unsubscribe_url";

/// Fails the write once the output passes the cap.
struct Capped {
    out: Vec<u8>,
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > MAX_OUTPUT {
            return Err(io::Error::other("output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Compiled {
    /// The variables the parts use (dotted for attribute lookups such as
    /// `user.first_name`), except `branding` and `unsubscribe_url`, which
    /// every render provides.
    pub fn used_variables(&self) -> BTreeSet<String> {
        let mut used = BTreeSet::new();
        for (_, name) in PARTS {
            let template = self.env.get_template(name).expect("added at compile");
            used.extend(
                template
                    .undeclared_variables(true)
                    .into_iter()
                    .filter(|v| v != "branding" && !v.starts_with("branding."))
                    .filter(|v| v != UNSUBSCRIBE_URL),
            );
        }
        used
    }

    /// Renders every part with `variables` and `branding` (the latter always
    /// wins over a variable of the same name).
    pub fn render(
        mut self,
        variables: &Map<String, Json>,
        branding: &Branding,
    ) -> Result<Rendered, Error> {
        let branding = serde_json::to_value(branding).expect("branding serialises");
        // A global too, so the imported components see it.
        self.env
            .add_global("branding", Value::from(minijinja::value::Serde(&branding)));
        let mut context = variables.clone();
        context.insert("branding".into(), branding);
        // Each recipient's own link replaces the mark at delivery.
        context.insert(UNSUBSCRIBE_URL.into(), Json::from(UNSUBSCRIBE_URL_MARK));
        let context = Value::from(minijinja::value::Serde(&context));
        let mut parts = Vec::with_capacity(3);
        for (field, name) in PARTS {
            let template = self.env.get_template(name).expect("added at compile");
            let mut capped = Capped { out: Vec::new() };
            match template.render_captured_to(context.clone(), &mut capped) {
                Ok(_) => parts.push(String::from_utf8_lossy(&capped.out).into_owned()),
                Err(error)
                    if capped.out.len() + 1 > MAX_OUTPUT
                        || error.kind() == ErrorKind::WriteFailure =>
                {
                    return Err(Error::invalid(
                        field,
                        format!("the rendered {field} is larger than {MAX_OUTPUT} bytes"),
                    ));
                }
                Err(error) => return Err(Error::invalid(field, describe(&error))),
            }
        }
        let text = parts.pop().expect("three parts");
        let html = parts.pop().expect("three parts");
        let subject = parts.pop().expect("three parts");
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = if self.derive_text {
            html_to_text(&html)
        } else {
            text
        };
        Ok(Rendered {
            subject,
            html,
            text,
        })
    }
}

/// Whether `path` (dotted) is present and not null in `variables`.
pub fn has_path(variables: &Map<String, Json>, path: &str) -> bool {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return false;
    };
    let mut current = match variables.get(first) {
        Some(value) => value,
        None => return false,
    };
    for part in parts {
        current = match current.get(part) {
            Some(value) => value,
            None => return false,
        };
    }
    !current.is_null()
}

/// The dotted paths of the given variables: objects are walked, anything
/// else is a leaf.
pub fn given_paths(variables: &Map<String, Json>) -> Vec<String> {
    fn walk(prefix: &str, value: &Json, out: &mut Vec<String>) {
        match value {
            Json::Object(map) if !map.is_empty() => {
                for (key, inner) in map {
                    walk(&format!("{prefix}.{key}"), inner, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut out = Vec::new();
    for (key, value) in variables {
        walk(key, value, &mut out);
    }
    out
}

/// The given paths no part uses: neither the path itself, nor a parent of
/// it (the template uses the whole object), nor a child (the template
/// reads inside it).
pub fn unused(variables: &Map<String, Json>, used: &BTreeSet<String>) -> Vec<String> {
    given_paths(variables)
        .into_iter()
        .filter(|given| {
            !used.iter().any(|u| {
                u == given
                    || given.starts_with(&format!("{u}."))
                    || u.starts_with(&format!("{given}."))
            })
        })
        .collect()
}
