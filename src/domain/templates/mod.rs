//! Templates: the system catalog, account templates with versions, branding,
//! and the renderer the send path uses.

pub mod branding;
pub mod catalog;
pub mod render;
pub mod text;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use super::clock::{Clock, from_micros, to_micros};
use super::error::{Error, FieldViolation, Result};
use branding::Branding;
use render::{Rendered, TemplateSource};

/// Who owns a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateOwner {
    System,
    Account,
}

/// One declared variable of a template.
#[derive(Clone, Debug, PartialEq)]
pub struct VariableSpec {
    /// Dotted for nested values, e.g. `user.first_name`.
    pub name: String,
    pub required: bool,
    pub description: String,
    pub example: Json,
}

/// One version of an account template.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionInfo {
    pub version: i32,
    pub published: bool,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

/// A template as callers see it: its metadata and one version's content.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateDef {
    pub slug: String,
    pub name: String,
    pub category: String,
    pub description: String,
    pub owner: TemplateOwner,
    pub source: TemplateSource,
    pub variables: Vec<VariableSpec>,
    /// The version whose content this is.
    pub version: i32,
    pub published_version: Option<i32>,
    pub versions: Vec<VersionInfo>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A stored version of an account template.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVersion {
    pub version: i32,
    pub source: TemplateSource,
    pub variables: Vec<VariableSpec>,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

/// A stored account template with all its versions (oldest first).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTemplate {
    pub id: i64,
    pub account_id: String,
    pub slug: String,
    pub name: String,
    pub category: String,
    pub description: String,
    pub published_version: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub versions: Vec<StoredVersion>,
}

impl StoredTemplate {
    fn latest(&self) -> &StoredVersion {
        self.versions
            .last()
            .expect("a stored template has a version")
    }

    fn version(&self, version: i32) -> Option<&StoredVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The template with the content of `version`.
    fn def(&self, version: &StoredVersion) -> TemplateDef {
        TemplateDef {
            slug: self.slug.clone(),
            name: self.name.clone(),
            category: self.category.clone(),
            description: self.description.clone(),
            owner: TemplateOwner::Account,
            source: version.source.clone(),
            variables: version.variables.clone(),
            version: version.version,
            published_version: self.published_version,
            versions: self
                .versions
                .iter()
                .map(|v| VersionInfo {
                    version: v.version,
                    published: Some(v.version) == self.published_version,
                    created_at: v.created_at,
                    published_at: v.published_at,
                })
                .collect(),
            created_at: Some(self.created_at),
            updated_at: Some(self.updated_at),
        }
    }
}

/// What the template use cases need from storage.
pub trait TemplateStore: Send + Sync + 'static {
    /// The account's name (the default brand name).
    fn account_name(&self, account_id: &str) -> impl Future<Output = Result<String>> + Send;
    fn branding(&self, account_id: &str) -> impl Future<Output = Result<Option<Branding>>> + Send;
    fn put_branding(
        &self,
        account_id: &str,
        branding: &Branding,
    ) -> impl Future<Output = Result<()>> + Send;
    fn template(
        &self,
        account_id: &str,
        slug: &str,
    ) -> impl Future<Output = Result<Option<StoredTemplate>>> + Send;
    fn templates(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredTemplate>>> + Send;
    /// Inserts a template and its versions; returns its id.
    fn insert_template(
        &self,
        template: &StoredTemplate,
    ) -> impl Future<Output = Result<i64>> + Send;
    /// Adds a version and writes the template's metadata.
    fn add_version(
        &self,
        template: &StoredTemplate,
        version: &StoredVersion,
    ) -> impl Future<Output = Result<()>> + Send;
    fn publish(
        &self,
        template_id: i64,
        version: i32,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn delete_template(
        &self,
        account_id: &str,
        slug: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// A dry run's result.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderReport {
    pub rendered: Rendered,
    pub missing_variables: Vec<String>,
    pub unknown_variables: Vec<String>,
    pub version: i32,
}

/// A page of templates.
#[derive(Clone, Debug)]
pub struct TemplatePage {
    pub templates: Vec<TemplateDef>,
    pub next_page_token: String,
}

/// The fields of a template a request may set.
#[derive(Clone, Debug, Default)]
pub struct TemplateDraft {
    pub name: Option<String>,
    pub category: Option<String>,
    pub description: Option<String>,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub variables: Option<Vec<VariableSpec>>,
}

/// Checks a slug: `[a-z0-9-]`, 1–64 characters, no leading or trailing `-`.
pub fn validate_slug(field: &str, slug: &str) -> Option<FieldViolation> {
    let ok = !slug.is_empty()
        && slug.len() <= 64
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    (!ok).then(|| {
        FieldViolation::new(
            field,
            "must be 1–64 characters of a-z, 0-9 and `-`, not starting or ending with `-`",
        )
    })
}

fn validate_variables(variables: &[VariableSpec]) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, v) in variables.iter().enumerate() {
        let valid = !v.name.is_empty()
            && v.name.len() <= 128
            && v.name.split('.').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !part.starts_with(|c: char| c.is_ascii_digit())
            });
        if !valid {
            out.push(FieldViolation::new(
                format!("variables[{i}].name"),
                "must be an identifier, or identifiers joined by `.` (e.g. user.first_name)",
            ));
        } else if !seen.insert(v.name.clone()) {
            out.push(FieldViolation::new(
                format!("variables[{i}].name"),
                format!("`{}` is declared twice", v.name),
            ));
        }
    }
    out
}

/// Checks a whole version: metadata, parts that compile, variables.
fn validate_version(
    name: &str,
    category: &str,
    source: &TemplateSource,
    variables: &[VariableSpec],
) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    if name.trim().is_empty() || name.chars().count() > 200 {
        out.push(FieldViolation::new(
            "name",
            "required, at most 200 characters",
        ));
    }
    if category.chars().count() > 64 {
        out.push(FieldViolation::new("category", "at most 64 characters"));
    }
    if source.subject.trim().is_empty() {
        out.push(FieldViolation::new("subject", "required"));
    }
    if source.html.trim().is_empty() && source.text.trim().is_empty() {
        out.push(FieldViolation::new("html", "html or text is required"));
    }
    for (field, part, max) in [
        ("subject", &source.subject, 2_000),
        ("html", &source.html, 512 * 1024),
        ("text", &source.text, 512 * 1024),
    ] {
        if part.len() > max {
            out.push(FieldViolation::new(field, format!("at most {max} bytes")));
        }
    }
    out.extend(validate_variables(variables));
    if let Err(violations) = render::check(source) {
        out.extend(violations);
    }
    out
}

/// The template use cases.
pub struct Templates<S> {
    store: S,
    clock: Arc<dyn Clock>,
}

/// The page size when none is asked for, and the largest allowed.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 200;

fn not_found(slug: &str) -> Error {
    Error::NotFound {
        kind: "template",
        id: slug.to_owned(),
    }
}

impl<S: TemplateStore> Templates<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>) -> Self {
        Templates { store, clock }
    }

    fn now(&self) -> DateTime<Utc> {
        // Stored times have microsecond precision; work with what is stored.
        from_micros(to_micros(self.clock.now()))
    }

    /// The account's branding, or the defaults under its name.
    pub async fn branding(&self, account_id: &str) -> Result<Branding> {
        match self.store.branding(account_id).await? {
            Some(branding) => Ok(branding),
            None => Ok(Branding::defaults(
                &self.store.account_name(account_id).await?,
            )),
        }
    }

    /// Applies `change` to the account's branding and stores it when valid.
    pub async fn update_branding(
        &self,
        account_id: &str,
        change: impl FnOnce(&mut Branding),
    ) -> Result<Branding> {
        let mut branding = self.branding(account_id).await?;
        change(&mut branding);
        let violations = branding.violations();
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        branding.updated_at = Some(self.now());
        self.store.put_branding(account_id, &branding).await?;
        Ok(branding)
    }

    /// Lists the system catalog and the account's templates (an account
    /// template shadows the system one of the same slug), by slug.
    pub async fn list(
        &self,
        account_id: &str,
        category: &str,
        owner: Option<TemplateOwner>,
        page_size: i32,
        page_token: &str,
    ) -> Result<TemplatePage> {
        let mut violations = Vec::new();
        let limit = crate::domain::paging::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default() as usize;
        let after = match page_token {
            "" => None,
            token => match hex::decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| {
                    let (category, slug) = t.strip_prefix("t2:")?.split_once('\0')?;
                    Some((category.to_owned(), slug.to_owned()))
                }) {
                Some(position) => Some(position),
                None => {
                    violations.push(FieldViolation::new(
                        "page_token",
                        "not a page token returned by ListTemplates",
                    ));
                    None
                }
            },
        };
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let own: Vec<TemplateDef> = self
            .store
            .templates(account_id)
            .await?
            .iter()
            .map(|t| t.def(t.latest()))
            .collect();
        let shadowed: BTreeSet<String> = own.iter().map(|o| o.slug.clone()).collect();
        let mut all: Vec<TemplateDef> = catalog::all()
            .iter()
            .filter(|s| !shadowed.contains(&s.slug))
            .cloned()
            .chain(own)
            .filter(|t| category.is_empty() || t.category == category)
            .filter(|t| owner.is_none_or(|o| t.owner == o))
            .filter(|t| {
                after.as_ref().is_none_or(|(category, slug)| {
                    (t.category.as_str(), t.slug.as_str()) > (category.as_str(), slug.as_str())
                })
            })
            .collect();
        // The contract's order: by category, then slug.
        all.sort_by(|a, b| (&a.category, &a.slug).cmp(&(&b.category, &b.slug)));
        let next_page_token = if all.len() > limit {
            all.truncate(limit);
            let last = all.last().expect("a full page");
            hex::encode(format!("t2:{}\0{}", last.category, last.slug))
        } else {
            String::new()
        };
        Ok(TemplatePage {
            templates: all,
            next_page_token,
        })
    }

    /// The template `slug` with the content of `version` (0: the published
    /// version, or the latest draft when none is published).
    pub async fn get(&self, account_id: &str, slug: &str, version: i32) -> Result<TemplateDef> {
        if let Some(stored) = self.store.template(account_id, slug).await? {
            let chosen = match version {
                0 => stored
                    .published_version
                    .and_then(|v| stored.version(v))
                    .unwrap_or_else(|| stored.latest()),
                n => stored.version(n).ok_or_else(|| {
                    Error::invalid(
                        "version",
                        format!(
                            "template `{slug}` has versions 1 to {}",
                            stored.latest().version
                        ),
                    )
                })?,
            };
            return Ok(stored.def(chosen));
        }
        let system = catalog::get(slug).ok_or_else(|| not_found(slug))?;
        if version > 1 {
            return Err(Error::invalid(
                "version",
                format!("system template `{slug}` has only version 1"),
            ));
        }
        Ok(system.clone())
    }

    /// The content a send uses: the pinned version, else the published one.
    pub async fn for_send(
        &self,
        account_id: &str,
        slug: &str,
        version: i32,
    ) -> Result<TemplateDef> {
        let template = self.get(account_id, slug, version).await?;
        if version == 0
            && template.owner == TemplateOwner::Account
            && template.published_version.is_none()
        {
            return Err(Error::FailedPrecondition(format!(
                "template `{slug}` has no published version; publish one or pin template_version"
            )));
        }
        Ok(template)
    }

    /// Renders `template` for the account without sending: what comes out,
    /// which required variables are missing and which given ones are unused.
    pub async fn dry_run(
        &self,
        account_id: &str,
        slug: &str,
        version: i32,
        variables: &Map<String, Json>,
    ) -> Result<RenderReport> {
        let template = self.get(account_id, slug, version).await?;
        let branding = self.branding(account_id).await?;
        let compiled = render::compile(&template.source).map_err(Error::Validation)?;
        let used = compiled.used_variables();
        let rendered = compiled.render(variables, &branding)?;
        let declared: BTreeSet<String> =
            template.variables.iter().map(|v| v.name.clone()).collect();
        Ok(RenderReport {
            rendered,
            missing_variables: missing(&template, variables),
            unknown_variables: render::unused(variables, &used.union(&declared).cloned().collect()),
            version: template.version,
        })
    }

    /// Renders for a send: the published (or pinned) version; missing
    /// required variables are INVALID_ARGUMENT naming each of them.
    pub async fn render_for_send(
        &self,
        account_id: &str,
        slug: &str,
        version: i32,
        variables: &Map<String, Json>,
    ) -> Result<(Rendered, i32)> {
        let template = self.for_send(account_id, slug, version).await?;
        let missing = missing(&template, variables);
        if !missing.is_empty() {
            return Err(Error::Validation(
                missing
                    .into_iter()
                    .map(|name| {
                        FieldViolation::new(
                            format!("variables.{name}"),
                            format!("required by template `{slug}`"),
                        )
                    })
                    .collect(),
            ));
        }
        let branding = self.branding(account_id).await?;
        let rendered = render::render(&template.source, variables, &branding)?;
        Ok((rendered, template.version))
    }

    /// Creates an account template (version 1, published when asked).
    pub async fn create(
        &self,
        account_id: &str,
        slug: &str,
        draft: TemplateDraft,
        publish: bool,
    ) -> Result<TemplateDef> {
        let now = self.now();
        let source = TemplateSource {
            subject: draft.subject.unwrap_or_default(),
            html: draft.html.unwrap_or_default(),
            text: draft.text.unwrap_or_default(),
        };
        let name = draft.name.unwrap_or_default();
        let category = draft.category.unwrap_or_else(|| "custom".into());
        let variables = draft.variables.unwrap_or_default();
        let mut violations: Vec<FieldViolation> = validate_slug("slug", slug).into_iter().collect();
        violations.extend(validate_version(&name, &category, &source, &variables));
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        if self.store.template(account_id, slug).await?.is_some() {
            return Err(Error::AlreadyExists {
                kind: "template",
                id: slug.to_owned(),
            });
        }
        let mut stored = StoredTemplate {
            id: 0,
            account_id: account_id.to_owned(),
            slug: slug.to_owned(),
            name,
            category,
            description: draft.description.unwrap_or_default(),
            published_version: publish.then_some(1),
            created_at: now,
            updated_at: now,
            versions: vec![StoredVersion {
                version: 1,
                source,
                variables,
                created_at: now,
                published_at: publish.then_some(now),
            }],
        };
        stored.id = self.store.insert_template(&stored).await?;
        Ok(stored.def(stored.latest()))
    }

    /// Saves changes as a new draft version (the published one stays live).
    pub async fn update(
        &self,
        account_id: &str,
        slug: &str,
        draft: TemplateDraft,
    ) -> Result<TemplateDef> {
        let mut stored = self.owned(account_id, slug).await?;
        let latest = stored.latest().clone();
        let source = TemplateSource {
            subject: draft.subject.unwrap_or(latest.source.subject),
            html: draft.html.unwrap_or(latest.source.html),
            text: draft.text.unwrap_or(latest.source.text),
        };
        let variables = draft.variables.unwrap_or(latest.variables);
        if let Some(name) = draft.name {
            stored.name = name;
        }
        if let Some(category) = draft.category {
            stored.category = category;
        }
        if let Some(description) = draft.description {
            stored.description = description;
        }
        let violations = validate_version(&stored.name, &stored.category, &source, &variables);
        if !violations.is_empty() {
            return Err(Error::Validation(violations));
        }
        let now = self.now();
        stored.updated_at = now;
        let version = StoredVersion {
            version: latest.version + 1,
            source,
            variables,
            created_at: now,
            published_at: None,
        };
        self.store.add_version(&stored, &version).await?;
        stored.versions.push(version);
        Ok(stored.def(stored.latest()))
    }

    /// Publishes `version` (0: the latest): sends use it from now on.
    pub async fn publish(&self, account_id: &str, slug: &str, version: i32) -> Result<TemplateDef> {
        let mut stored = self.owned(account_id, slug).await?;
        let version = match version {
            0 => stored.latest().version,
            n => {
                stored
                    .version(n)
                    .ok_or_else(|| {
                        Error::invalid(
                            "version",
                            format!(
                                "template `{slug}` has versions 1 to {}",
                                stored.latest().version
                            ),
                        )
                    })?
                    .version
            }
        };
        let now = self.now();
        self.store.publish(stored.id, version, now).await?;
        stored.published_version = Some(version);
        stored.updated_at = now;
        if let Some(v) = stored.versions.iter_mut().find(|v| v.version == version) {
            v.published_at = Some(now);
        }
        let shown = stored.version(version).expect("just published").clone();
        Ok(stored.def(&shown))
    }

    /// Copies a system or own template into a new account template
    /// (version 1, published).
    pub async fn clone_template(
        &self,
        account_id: &str,
        slug: &str,
        new_slug: &str,
        name: &str,
    ) -> Result<TemplateDef> {
        if let Some(violation) = validate_slug("new_slug", new_slug) {
            return Err(Error::Validation(vec![violation]));
        }
        let source = self.get(account_id, slug, 0).await?;
        self.create(
            account_id,
            new_slug,
            TemplateDraft {
                name: Some(if name.is_empty() {
                    format!("{} (copy)", source.name)
                } else {
                    name.to_owned()
                }),
                category: Some(source.category),
                description: Some(source.description),
                subject: Some(source.source.subject),
                html: Some(source.source.html),
                text: Some(source.source.text),
                variables: Some(source.variables),
            },
            true,
        )
        .await
    }

    /// Deletes an account template (a shadowed system template reappears).
    pub async fn delete(&self, account_id: &str, slug: &str) -> Result<()> {
        if self.store.delete_template(account_id, slug).await? {
            return Ok(());
        }
        if catalog::get(slug).is_some() {
            return Err(Error::FailedPrecondition(format!(
                "`{slug}` is a system template; it cannot be deleted (clone it to change it)"
            )));
        }
        Err(not_found(slug))
    }

    async fn owned(&self, account_id: &str, slug: &str) -> Result<StoredTemplate> {
        match self.store.template(account_id, slug).await? {
            Some(stored) => Ok(stored),
            None if catalog::get(slug).is_some() => Err(Error::FailedPrecondition(format!(
                "`{slug}` is a system template; clone it into your own slug to change it"
            ))),
            None => Err(not_found(slug)),
        }
    }
}

/// The required variables of `template` that `variables` lacks.
fn missing(template: &TemplateDef, variables: &Map<String, Json>) -> Vec<String> {
    template
        .variables
        .iter()
        .filter(|v| v.required && !render::has_path(variables, &v.name))
        .map(|v| v.name.clone())
        .collect()
}
