//! Account templates with their versions, and branding.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::entities::{accounts, branding, template_versions, templates};
use super::{Store, db_error};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::templates::branding::Branding;
use crate::domain::templates::render::TemplateSource;
use crate::domain::templates::{StoredTemplate, StoredVersion, TemplateStore, VariableSpec};
use crate::domain::{Error, Result};

/// The stored JSON form of a version's variables.
#[derive(Serialize, Deserialize)]
struct StoredVariable {
    name: String,
    required: bool,
    description: String,
    example: serde_json::Value,
}

fn variables_to_json(variables: &[VariableSpec]) -> String {
    let stored: Vec<StoredVariable> = variables
        .iter()
        .map(|v| StoredVariable {
            name: v.name.clone(),
            required: v.required,
            description: v.description.clone(),
            example: v.example.clone(),
        })
        .collect();
    serde_json::to_string(&stored).expect("variables serialise")
}

fn variables_from_json(text: &str) -> Result<Vec<VariableSpec>> {
    let stored: Vec<StoredVariable> = serde_json::from_str(text)
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored template variables: {e}")))?;
    Ok(stored
        .into_iter()
        .map(|v| VariableSpec {
            name: v.name,
            required: v.required,
            description: v.description,
            example: v.example,
        })
        .collect())
}

fn version_from(m: template_versions::Model) -> Result<StoredVersion> {
    Ok(StoredVersion {
        version: m.version,
        source: TemplateSource {
            subject: m.subject,
            html: m.html,
            text: m.text_body,
        },
        variables: variables_from_json(&m.variables)?,
        created_at: from_micros(m.created_at),
        published_at: m.published_at.map(from_micros),
    })
}

fn version_row(template_id: i64, v: &StoredVersion) -> template_versions::ActiveModel {
    template_versions::ActiveModel {
        template_id: Set(template_id),
        version: Set(v.version),
        subject: Set(v.source.subject.clone()),
        html: Set(v.source.html.clone()),
        text_body: Set(v.source.text.clone()),
        variables: Set(variables_to_json(&v.variables)),
        created_at: Set(to_micros(v.created_at)),
        published_at: Set(v.published_at.map(to_micros)),
        ..Default::default()
    }
}

impl Store {
    async fn with_versions(&self, rows: Vec<templates::Model>) -> Result<Vec<StoredTemplate>> {
        let mut out = Vec::with_capacity(rows.len());
        for m in rows {
            let versions = template_versions::Entity::find()
                .filter(template_versions::Column::TemplateId.eq(m.id))
                .order_by_asc(template_versions::Column::Version)
                .all(self.db())
                .await
                .map_err(db_error)?
                .into_iter()
                .map(version_from)
                .collect::<Result<Vec<_>>>()?;
            if versions.is_empty() {
                return Err(Error::Internal(anyhow::anyhow!(
                    "template {} has no version",
                    m.id
                )));
            }
            out.push(StoredTemplate {
                id: m.id,
                account_id: m.account_id,
                slug: m.slug,
                name: m.name,
                category: m.category,
                description: m.description,
                published_version: m.published_version,
                created_at: from_micros(m.created_at),
                updated_at: from_micros(m.updated_at),
                versions,
            });
        }
        Ok(out)
    }
}

impl TemplateStore for Store {
    async fn account_name(&self, account_id: &str) -> Result<String> {
        accounts::Entity::find_by_id(account_id.to_owned())
            .one(self.db())
            .await
            .map_err(db_error)?
            .map(|a| a.name)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("account {account_id} vanished")))
    }

    async fn branding(&self, account_id: &str) -> Result<Option<Branding>> {
        let row = branding::Entity::find_by_id(account_id.to_owned())
            .one(self.db())
            .await
            .map_err(db_error)?;
        Ok(row.map(|m| Branding {
            brand_name: m.brand_name,
            logo_url: m.logo_url,
            primary_color: m.primary_color,
            accent_color: m.accent_color,
            support_email: m.support_email,
            support_url: m.support_url,
            footer_html: m.footer_html,
            button_radius: m.button_radius,
            privacy_policy_url: m.privacy_policy_url,
            terms_url: m.terms_url,
            updated_at: Some(from_micros(m.updated_at)),
        }))
    }

    async fn put_branding(&self, account_id: &str, b: &Branding) -> Result<()> {
        let row = branding::ActiveModel {
            account_id: Set(account_id.to_owned()),
            brand_name: Set(b.brand_name.clone()),
            logo_url: Set(b.logo_url.clone()),
            primary_color: Set(b.primary_color.clone()),
            accent_color: Set(b.accent_color.clone()),
            support_email: Set(b.support_email.clone()),
            support_url: Set(b.support_url.clone()),
            footer_html: Set(b.footer_html.clone()),
            button_radius: Set(b.button_radius),
            privacy_policy_url: Set(b.privacy_policy_url.clone()),
            terms_url: Set(b.terms_url.clone()),
            updated_at: Set(b.updated_at.map(to_micros).unwrap_or_default()),
        };
        use branding::Column as C;
        branding::Entity::insert(row)
            .on_conflict(
                OnConflict::column(C::AccountId)
                    .update_columns([
                        C::BrandName,
                        C::LogoUrl,
                        C::PrimaryColor,
                        C::AccentColor,
                        C::SupportEmail,
                        C::SupportUrl,
                        C::FooterHtml,
                        C::ButtonRadius,
                        C::PrivacyPolicyUrl,
                        C::TermsUrl,
                        C::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(self.db())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn template(&self, account_id: &str, slug: &str) -> Result<Option<StoredTemplate>> {
        let rows = templates::Entity::find()
            .filter(templates::Column::AccountId.eq(account_id))
            .filter(templates::Column::Slug.eq(slug))
            .all(self.db())
            .await
            .map_err(db_error)?;
        Ok(self.with_versions(rows).await?.pop())
    }

    async fn templates(&self, account_id: &str) -> Result<Vec<StoredTemplate>> {
        let rows = templates::Entity::find()
            .filter(templates::Column::AccountId.eq(account_id))
            .order_by_asc(templates::Column::Slug)
            .all(self.db())
            .await
            .map_err(db_error)?;
        self.with_versions(rows).await
    }

    async fn insert_template(&self, t: &StoredTemplate) -> Result<i64> {
        let tx = self.db().begin().await.map_err(db_error)?;
        let inserted = templates::ActiveModel {
            account_id: Set(t.account_id.clone()),
            slug: Set(t.slug.clone()),
            name: Set(t.name.clone()),
            category: Set(t.category.clone()),
            description: Set(t.description.clone()),
            published_version: Set(t.published_version),
            latest_version: Set(t.versions.last().map_or(1, |v| v.version)),
            created_at: Set(to_micros(t.created_at)),
            updated_at: Set(to_micros(t.updated_at)),
            ..Default::default()
        }
        .insert(&tx)
        .await
        .map_err(|e| match e.sql_err() {
            // Two creates of one slug raced past the use case's check.
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists {
                kind: "template",
                id: t.slug.clone(),
            },
            _ => db_error(e),
        })?;
        for version in &t.versions {
            version_row(inserted.id, version)
                .insert(&tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(inserted.id)
    }

    async fn add_version(&self, t: &StoredTemplate, v: &StoredVersion) -> Result<()> {
        let tx = self.db().begin().await.map_err(db_error)?;
        version_row(t.id, v).insert(&tx).await.map_err(db_error)?;
        templates::ActiveModel {
            id: Set(t.id),
            name: Set(t.name.clone()),
            category: Set(t.category.clone()),
            description: Set(t.description.clone()),
            latest_version: Set(v.version),
            updated_at: Set(to_micros(t.updated_at)),
            ..Default::default()
        }
        .update(&tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn publish(&self, template_id: i64, version: i32, at: DateTime<Utc>) -> Result<()> {
        let tx = self.db().begin().await.map_err(db_error)?;
        template_versions::Entity::update_many()
            .col_expr(
                template_versions::Column::PublishedAt,
                sea_orm::sea_query::Expr::value(to_micros(at)),
            )
            .filter(template_versions::Column::TemplateId.eq(template_id))
            .filter(template_versions::Column::Version.eq(version))
            .exec(&tx)
            .await
            .map_err(db_error)?;
        templates::ActiveModel {
            id: Set(template_id),
            published_version: Set(Some(version)),
            updated_at: Set(to_micros(at)),
            ..Default::default()
        }
        .update(&tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn delete_template(&self, account_id: &str, slug: &str) -> Result<bool> {
        // It reads the template before deleting it.
        let tx = super::begin_writing(self.db()).await?;
        let Some(row) = templates::Entity::find()
            .filter(templates::Column::AccountId.eq(account_id))
            .filter(templates::Column::Slug.eq(slug))
            .one(&tx)
            .await
            .map_err(db_error)?
        else {
            return Ok(false);
        };
        template_versions::Entity::delete_many()
            .filter(template_versions::Column::TemplateId.eq(row.id))
            .exec(&tx)
            .await
            .map_err(db_error)?;
        templates::Entity::delete_by_id(row.id)
            .exec(&tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }
}
