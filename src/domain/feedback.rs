//! Complaints: feedback reports (ARF, RFC 5965) that mailbox providers send
//! when a recipient marks a message as spam. A report names the original
//! message — by its Message-ID, which Posthorn chose at accept — and often
//! the recipient; applying it marks that recipient `complained`, appends
//! the `complained` event, and suppresses the address for good (reason
//! `complained`, origin `complaint`), so nothing is sent there again.

use std::future::Future;
use std::sync::Arc;

use mail_parser::{Message, MessageParser, MimeHeaders};

use super::clock::{Clock, from_micros, to_micros};
use super::error::{Error, FieldViolation, Result};
use super::ids::is_id;
use super::messages::EventDetails;

/// Feedback types that are complaints about the mail itself.
const COMPLAINTS: [&str; 3] = ["abuse", "fraud", "virus"];

/// What a feedback report says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The report's `Feedback-Type`, lower case.
    pub feedback_type: String,
    /// The id of the message it is about.
    pub message_id: String,
    /// Addresses it names as the recipient: `Original-Rcpt-To` and
    /// `Removal-Recipient` first, then the original's To and Cc.
    pub named: Vec<String>,
    /// Who reported it (`User-Agent` or `Reporting-MTA`).
    pub reporter: String,
}

fn bad(rule: impl Into<String>) -> Error {
    Error::Validation(vec![FieldViolation::new("report", rule)])
}

/// A header's value, unfolded and trimmed.
fn field(message: &Message<'_>, name: &str) -> Option<String> {
    let raw = message.header_raw(name)?;
    let value = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    (!value.is_empty()).then_some(value)
}

/// An address field of a report (`rfc822; a@b`, `<a@b>` or `a@b`).
fn address_in(value: &str) -> String {
    let value = value.rsplit(';').next().unwrap_or(value).trim();
    value
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_owned()
}

/// Reads a feedback report: a `multipart/report` with
/// `report-type=feedback-report`, its `message/feedback-report` part, and
/// the original message (`message/rfc822`) or its headers
/// (`text/rfc822-headers`).
pub fn read_report(raw: &[u8]) -> Result<Report> {
    let parsed = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| bad("must be an RFC 5322 message (the report as received)"))?;
    let is_report = parsed.content_type().is_some_and(|t| {
        t.ctype().eq_ignore_ascii_case("multipart")
            && t.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && t.attribute("report-type")
                .is_some_and(|r| r.eq_ignore_ascii_case("feedback-report"))
    });
    if !is_report {
        return Err(bad(
            "must be a feedback report (ARF, RFC 5965): multipart/report; report-type=feedback-report",
        ));
    }
    let of_type = |wanted: &str| {
        parsed.parts.iter().find(|part| {
            part.content_type().is_some_and(|t| {
                format!("{}/{}", t.ctype(), t.subtype().unwrap_or_default())
                    .eq_ignore_ascii_case(wanted)
            })
        })
    };
    let fields = of_type("message/feedback-report")
        .and_then(|part| MessageParser::default().parse_headers(part.contents()))
        .ok_or_else(|| bad("has no message/feedback-report part"))?;
    let feedback_type = field(&fields, "Feedback-Type")
        .map(|t| t.to_ascii_lowercase())
        .ok_or_else(|| bad("its feedback report has no Feedback-Type"))?;
    let original = match of_type("message/rfc822").and_then(|part| part.message()) {
        Some(message) => Some(message.clone()),
        None => of_type("text/rfc822-headers")
            .and_then(|part| MessageParser::default().parse_headers(part.contents())),
    }
    .ok_or_else(|| bad("has neither the original message nor its headers"))?;
    let message_id = original
        .message_id()
        .and_then(|id| id.split('@').next())
        .filter(|id| is_id(id, "msg"))
        .ok_or_else(|| {
            bad("the original message's Message-ID is not one Posthorn gave (<msg_…@host>)")
        })?
        .to_owned();
    let mut named: Vec<String> = ["Original-Rcpt-To", "Removal-Recipient"]
        .into_iter()
        .filter_map(|name| field(&fields, name))
        .map(|value| address_in(&value))
        .collect();
    for list in [original.to(), original.cc()].into_iter().flatten() {
        named.extend(list.iter().filter_map(|a| a.address()).map(str::to_owned));
    }
    let reporter = field(&fields, "User-Agent")
        .or_else(|| field(&fields, "Reporting-MTA").map(|mta| address_in(&mta)))
        .unwrap_or_default();
    Ok(Report {
        feedback_type,
        message_id,
        named,
        reporter,
    })
}

/// What applying a report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub message_id: String,
    pub recipient: String,
    pub feedback_type: String,
    /// False when the recipient had already complained: nothing changed.
    pub recorded: bool,
}

/// What complaints need from storage.
pub trait FeedbackStore: Send + Sync + 'static {
    /// The recipients (addresses as stored) of the account's message, or
    /// `None` when the account has no such message.
    fn recipients_of(
        &self,
        account_id: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<String>>>> + Send;

    /// In one transaction: moves the recipient to `complained` with the
    /// message's aggregate and a `complained` event, and suppresses the
    /// address for good (reason `complained`, origin `complaint`). `false`
    /// when the recipient had already complained (nothing is written).
    fn record_complaint(
        &self,
        account_id: &str,
        message_id: &str,
        recipient: &str,
        details: EventDetails,
        at: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// The complaint use case.
pub struct Feedback<S> {
    store: S,
    clock: Arc<dyn Clock>,
}

impl<S: FeedbackStore> Feedback<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>) -> Self {
        Feedback { store, clock }
    }

    /// Applies the feedback report `raw` to the account's message it is
    /// about. INVALID_ARGUMENT for what is not a complaint report, or names
    /// none of the message's recipients; NOT_FOUND for a message the
    /// account does not have.
    pub async fn report(&self, account_id: &str, raw: &[u8]) -> Result<Applied> {
        let report = read_report(raw)?;
        if !COMPLAINTS.contains(&report.feedback_type.as_str()) {
            return Err(bad(format!(
                "Feedback-Type `{}` is not a complaint; abuse, fraud and virus are",
                report.feedback_type
            )));
        }
        let recipients = self
            .store
            .recipients_of(account_id, &report.message_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "message",
                id: report.message_id.clone(),
            })?;
        let recipient = report
            .named
            .iter()
            .find_map(|named| {
                recipients
                    .iter()
                    .find(|r| r.eq_ignore_ascii_case(named))
                    .cloned()
            })
            .or_else(|| (recipients.len() == 1).then(|| recipients[0].clone()))
            .ok_or_else(|| {
                bad(format!(
                    "names none of the recipients of {}, which has several",
                    report.message_id
                ))
            })?;
        let reporter = if report.reporter.is_empty() {
            String::new()
        } else {
            format!(" by {}", report.reporter)
        };
        let details = EventDetails {
            reason: format!(
                "feedback report ({}){reporter}: the recipient marked the message as spam",
                report.feedback_type
            ),
            ..EventDetails::default()
        };
        let at = from_micros(to_micros(self.clock.now()));
        let recorded = self
            .store
            .record_complaint(account_id, &report.message_id, &recipient, details, at)
            .await?;
        Ok(Applied {
            message_id: report.message_id,
            recipient,
            feedback_type: report.feedback_type,
            recorded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "msg_0192f5b8c9a87e3f9b1c2d3e4f5a6b7c";

    /// An ARF report as Yahoo and others send them.
    fn arf(feedback_type: &str, rcpt: Option<&str>, original_id: &str) -> String {
        let rcpt = rcpt
            .map(|r| format!("Original-Rcpt-To: {r}\r\n"))
            .unwrap_or_default();
        format!(
            "From: feedback@provider.example\r\n\
             To: fbl@acme.example\r\n\
             Subject: FW: Your receipt\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report;\r\n \
             boundary=\"b1\"\r\n\
             \r\n\
             --b1\r\n\
             Content-Type: text/plain\r\n\
             \r\n\
             This is an email abuse report.\r\n\
             --b1\r\n\
             Content-Type: message/feedback-report\r\n\
             \r\n\
             Feedback-Type: {feedback_type}\r\n\
             User-Agent: ProviderFBL/1.0\r\n\
             Version: 1\r\n\
             {rcpt}\
             Arrival-Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n\
             \r\n\
             --b1\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             From: hello@acme.example\r\n\
             To: Jane <jane@example.com>, zoe@example.com\r\n\
             Subject: Your receipt\r\n\
             Message-ID: <{original_id}@posthorn.example>\r\n\
             \r\n\
             --b1--\r\n"
        )
    }

    #[test]
    fn a_report_names_its_message_type_recipient_and_reporter() {
        let report = read_report(arf("abuse", Some("<Jane@Example.com>"), ID).as_bytes()).unwrap();
        assert_eq!(
            report,
            Report {
                feedback_type: "abuse".into(),
                message_id: ID.into(),
                named: vec![
                    "Jane@Example.com".into(),
                    "jane@example.com".into(),
                    "zoe@example.com".into()
                ],
                reporter: "ProviderFBL/1.0".into(),
            }
        );
    }

    #[test]
    fn what_is_not_a_report_of_ours_is_refused_naming_why() {
        let rule = |raw: &str| match read_report(raw.as_bytes()) {
            Err(Error::Validation(v)) => {
                assert_eq!(v[0].field, "report");
                v[0].description.clone()
            }
            other => panic!("{other:?}"),
        };
        assert!(rule("").contains("RFC 5322"));
        assert!(rule("Subject: hi\r\n\r\nhello\r\n").contains("feedback report"));
        assert!(
            rule(&arf("abuse", None, "<not-ours>")).contains("Message-ID"),
            "another sender's message"
        );
        let no_fields = arf("abuse", None, ID).replace("Feedback-Type: abuse\r\n", "");
        assert!(rule(&no_fields).contains("Feedback-Type"));
    }
}
