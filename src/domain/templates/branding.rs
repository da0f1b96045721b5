//! An account's branding: injected into every render as `branding`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::FieldViolation;

/// The default primary colour (buttons, links).
pub const DEFAULT_PRIMARY: &str = "#00a071";
/// The default accent colour.
pub const DEFAULT_ACCENT: &str = "#00e5a0";
/// The default button corner radius in pixels.
pub const DEFAULT_RADIUS: i32 = 8;

/// Branding as templates see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Branding {
    pub brand_name: String,
    pub logo_url: String,
    pub primary_color: String,
    pub accent_color: String,
    pub support_email: String,
    pub support_url: String,
    pub footer_html: String,
    pub button_radius: i32,
    pub privacy_policy_url: String,
    pub terms_url: String,
    #[serde(skip)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Branding {
    /// The branding of an account that has set none: its name, the
    /// default colours and radius.
    pub fn defaults(brand_name: &str) -> Branding {
        Branding {
            brand_name: brand_name.to_owned(),
            logo_url: String::new(),
            primary_color: DEFAULT_PRIMARY.into(),
            accent_color: DEFAULT_ACCENT.into(),
            support_email: String::new(),
            support_url: String::new(),
            footer_html: String::new(),
            button_radius: DEFAULT_RADIUS,
            privacy_policy_url: String::new(),
            terms_url: String::new(),
            updated_at: None,
        }
    }

    /// Every rule the branding breaks, one violation per field.
    pub fn violations(&self) -> Vec<FieldViolation> {
        let mut out = Vec::new();
        if self.brand_name.chars().count() > 100 {
            out.push(FieldViolation::new(
                "branding.brand_name",
                "at most 100 characters",
            ));
        }
        for (field, value) in [
            ("branding.primary_color", &self.primary_color),
            ("branding.accent_color", &self.accent_color),
        ] {
            if !is_hex_colour(value) {
                out.push(FieldViolation::new(
                    field,
                    "must be a hex colour such as #00a071 or #0a7",
                ));
            }
        }
        for (field, value) in [
            ("branding.logo_url", &self.logo_url),
            ("branding.support_url", &self.support_url),
            ("branding.privacy_policy_url", &self.privacy_policy_url),
            ("branding.terms_url", &self.terms_url),
        ] {
            if !value.is_empty() && !is_http_url(value) {
                out.push(FieldViolation::new(
                    field,
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if !self.support_email.is_empty()
            && crate::domain::email::EmailAddress::parse(&self.support_email).is_err()
        {
            out.push(FieldViolation::new(
                "branding.support_email",
                "must be an email address",
            ));
        }
        if self.footer_html.len() > 10_000 {
            out.push(FieldViolation::new(
                "branding.footer_html",
                "at most 10000 bytes",
            ));
        }
        if !(0..=24).contains(&self.button_radius) {
            out.push(FieldViolation::new(
                "branding.button_radius",
                "must be between 0 and 24 (pixels)",
            ));
        }
        out
    }
}

fn is_hex_colour(value: &str) -> bool {
    value
        .strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_http_url(value: &str) -> bool {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && value.len() <= 2048
            && !value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
    })
}
