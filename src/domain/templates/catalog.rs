//! The system catalog: ready-made, branded templates embedded in the binary
//! (`catalog/*.toml`), each extending the shared layout.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value as Json;

use super::render::TemplateSource;
use super::{TemplateDef, TemplateOwner, VariableSpec};

const FILES: [&str; 5] = [
    include_str!("catalog/auth.toml"),
    include_str!("catalog/billing.toml"),
    include_str!("catalog/team.toml"),
    include_str!("catalog/product.toml"),
    include_str!("catalog/lifecycle.toml"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    templates: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    slug: String,
    name: String,
    category: String,
    description: String,
    subject: String,
    preheader: String,
    body: String,
    text: String,
    variables: Vec<Variable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Variable {
    name: String,
    required: bool,
    description: String,
    example: Json,
}

/// A catalog text body wrapped into a template that extends the text layout.
fn compose_text(text: &str) -> String {
    format!(
        "{{% extends \"layout.txt\" %}}\n{{% block content %}}{}{{% endblock %}}\n",
        text.trim()
    )
}

/// A catalog body wrapped into a template that extends the layout.
fn compose(preheader: &str, body: &str) -> String {
    format!(
        "{{% extends \"layout.html\" %}}\n{{% block preheader %}}{preheader}{{% endblock %}}\n{{% block content %}}{{% import \"components.html\" as ui %}}\n{}\n{{% endblock %}}\n",
        body.trim()
    )
}

static CATALOG: LazyLock<Vec<TemplateDef>> = LazyLock::new(|| {
    FILES
        .iter()
        .flat_map(|file| {
            toml::from_str::<File>(file)
                .expect("the embedded catalog parses")
                .templates
        })
        .map(|entry| TemplateDef {
            slug: entry.slug,
            name: entry.name,
            category: entry.category,
            description: entry.description,
            owner: TemplateOwner::System,
            source: TemplateSource {
                subject: entry.subject,
                html: compose(&entry.preheader, &entry.body),
                text: compose_text(&entry.text),
            },
            variables: entry
                .variables
                .into_iter()
                .map(|v| VariableSpec {
                    name: v.name,
                    required: v.required,
                    description: v.description,
                    example: v.example,
                })
                .collect(),
            version: 1,
            published_version: Some(1),
            versions: Vec::new(),
            created_at: None,
            updated_at: None,
        })
        .collect()
});

/// Every system template, in catalog order.
pub fn all() -> &'static [TemplateDef] {
    &CATALOG
}

/// The system template with this slug.
pub fn get(slug: &str) -> Option<&'static TemplateDef> {
    CATALOG.iter().find(|t| t.slug == slug)
}

/// The variables of `template` filled with their examples, nested by their
/// dotted names.
pub fn example_variables(template: &TemplateDef) -> serde_json::Map<String, Json> {
    let mut root = serde_json::Map::new();
    for variable in &template.variables {
        let mut parts: Vec<&str> = variable.name.split('.').collect();
        let leaf = parts.pop().expect("a name has a part");
        let mut map = &mut root;
        for part in parts {
            map = map
                .entry(part.to_owned())
                .or_insert_with(|| Json::Object(serde_json::Map::new()))
                .as_object_mut()
                .expect("nested variables are objects");
        }
        map.insert(leaf.to_owned(), variable.example.clone());
    }
    root
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use super::super::branding::Branding;
    use super::super::render::{render, used_variables};
    use super::*;

    fn branded() -> Branding {
        Branding {
            logo_url: "https://cdn.example.com/logo.png".into(),
            primary_color: "#123abc".into(),
            support_email: "help@example.com".into(),
            privacy_policy_url: "https://example.com/privacy".into(),
            terms_url: "https://example.com/terms".into(),
            footer_html: "<b>Acme Ltd</b>, 1 Main St".into(),
            button_radius: 0,
            ..Branding::defaults("Acme")
        }
    }

    #[test]
    fn the_catalog_has_at_least_35_templates_in_the_five_categories() {
        let slugs: BTreeSet<&str> = all().iter().map(|t| t.slug.as_str()).collect();
        assert!(all().len() >= 35, "{} templates", all().len());
        assert_eq!(slugs.len(), all().len(), "slugs are unique");
        let categories: BTreeSet<&str> = all().iter().map(|t| t.category.as_str()).collect();
        assert_eq!(
            categories,
            BTreeSet::from(["auth", "billing", "lifecycle", "product", "team"])
        );
        for slug in [
            "welcome",
            "verify-email",
            "password-reset",
            "password-changed",
            "magic-link",
            "two-factor-code",
            "new-device-sign-in",
            "account-locked",
            "email-change-confirm",
            "receipt",
            "invoice",
            "payment-failed",
            "payment-method-expiring",
            "trial-ending",
            "trial-ended",
            "subscription-renewed",
            "subscription-cancelled",
            "refund-issued",
            "plan-changed",
            "team-invite",
            "invite-accepted",
            "role-changed",
            "mention",
            "comment-reply",
            "access-request",
            "weekly-digest",
            "usage-limit-warning",
            "export-ready",
            "report-ready",
            "feature-announcement",
            "security-alert",
            "maintenance-notice",
            "incident-update",
            "onboarding-day-1",
            "feedback-request",
            "win-back",
        ] {
            assert!(slugs.contains(slug), "{slug} is in the catalog");
        }
    }

    #[test]
    fn a_receipt_of_two_thousand_lines_renders_within_the_budget() {
        // The budget that stops a hostile template leaves a long real email
        // room: 2,000 rows through the layout and the `facts` component.
        let source = TemplateSource {
            subject: "Your receipt".into(),
            html: "{% extends \"layout.html\" %}{% import \"components.html\" as ui %}\
                   {% block content %}{{ ui.facts(items) }}{% endblock %}"
                .into(),
            text: String::new(),
        };
        let items = (0..2000)
            .map(|i| Json::from(vec![format!("Item {i}"), format!("${i}.00")]))
            .collect();
        let variables = serde_json::Map::from_iter([("items".to_owned(), Json::Array(items))]);
        let out = render(&source, &variables, &branded()).expect("renders");
        assert!(out.html.contains("Item 0") && out.html.contains("$1999.00"));
        assert!(out.text.contains("Item 1999"), "the derived text part");
    }

    #[test]
    fn every_template_declares_exactly_the_variables_it_uses() {
        for template in all() {
            let used = used_variables(&template.source).expect("compiles");
            let declared: BTreeSet<String> =
                template.variables.iter().map(|v| v.name.clone()).collect();
            assert_eq!(used, declared, "{}", template.slug);
            assert!(!template.description.is_empty() && !template.name.is_empty());
        }
    }

    #[test]
    fn every_template_renders_its_examples_with_default_and_custom_branding() {
        for template in all() {
            let variables = example_variables(template);
            for branding in [Branding::defaults("Acme"), branded()] {
                let started = Instant::now();
                let out = render(&template.source, &variables, &branding)
                    .unwrap_or_else(|e| panic!("{}: {e}", template.slug));
                assert!(started.elapsed() < Duration::from_secs(1));
                let slug = &template.slug;
                assert!(
                    !out.subject.is_empty() && !out.subject.contains('\n'),
                    "{slug}"
                );
                assert!(!out.subject.contains("{{"), "{slug}: {}", out.subject);
                assert!(out.html.contains("<!DOCTYPE html>"), "{slug}");
                assert!(
                    out.html.contains(&branding.primary_color),
                    "{slug}: button colour"
                );
                assert!(out.text.len() > 80, "{slug}: text part {:?}", out.text);
                assert!(
                    !out.text.contains("{{") && !out.text.contains("{%"),
                    "{slug}: {}",
                    out.text
                );
                assert!(
                    out.text.trim_end().ends_with(&branding.brand_name)
                        || out.text.contains("Terms & Conditions: "),
                    "{slug}: the text footer"
                );
                // Every required example value shows up in the email.
                for v in template.variables.iter().filter(|v| v.required) {
                    if let Json::String(example) = &v.example {
                        let escaped = example
                            .replace('&', "&amp;")
                            .replace('\'', "&#x27;")
                            .replace('/', "&#x2f;")
                            .replace('"', "&quot;");
                        assert!(
                            out.html.contains(&escaped) || out.subject.contains(example.as_str()),
                            "{slug}: `{}` example missing",
                            v.name
                        );
                    }
                }
                if branding.logo_url.is_empty() {
                    assert!(out.html.contains(">Acme</span>"), "{slug}: text header");
                    assert!(!out.html.contains("Privacy Policy"), "{slug}");
                } else {
                    assert!(
                        out.html
                            .contains("https:&#x2f;&#x2f;cdn.example.com&#x2f;logo.png"),
                        "{slug}"
                    );
                    assert!(
                        out.html
                            .contains("https:&#x2f;&#x2f;example.com&#x2f;privacy\""),
                        "{slug}"
                    );
                    assert!(
                        out.html.contains("Privacy Policy")
                            && out.html.contains("Terms &amp; Conditions")
                    );
                    assert!(
                        out.html.contains("<b>Acme Ltd</b>"),
                        "{slug}: footer html is the account's own"
                    );
                    if out.html.contains("bgcolor=") {
                        assert!(
                            out.html.contains("border-radius:0px"),
                            "{slug}: button radius"
                        );
                    }
                    assert!(
                        out.text
                            .contains("Privacy Policy: https://example.com/privacy\n"),
                        "{slug}: {}",
                        out.text
                    );
                    assert!(out.text.contains("Support: help@example.com"), "{slug}");
                }
            }
        }
    }
}
