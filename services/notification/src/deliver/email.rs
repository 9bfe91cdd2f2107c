//! Email over SMTP (lettre): a plain-text and an HTML part from the templates in
//! `templates/` (the HTML one autoescaped, since titles and bodies carry user text).

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use minijinja::Environment;
use mirai_proto::notification::v1::AttemptOutcome;
use secrecy::ExposeSecret as _;
use serde::Serialize;

use super::Attempted;
use crate::config::{SmtpConfig, SmtpTls};

/// One notification as the templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub title: String,
    pub body: String,
    pub symbol: String,
    pub created_at: String,
}

/// The SMTP sender.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    templates: Environment<'static>,
}

impl Email {
    pub fn new(config: &SmtpConfig) -> anyhow::Result<Self> {
        let builder = match config.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)?,
        };
        let mut builder = builder.port(config.port).timeout(Some(config.timeout));
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let mut templates = Environment::new();
        templates.add_template("email.txt", include_str!("templates/email.txt"))?;
        templates.add_template("email.html", include_str!("templates/email.html"))?;
        Ok(Self {
            transport: builder.build(),
            from: config.from.parse()?,
            templates,
        })
    }

    fn render(&self, subject: &str, items: &[Item]) -> anyhow::Result<(String, String)> {
        let context = minijinja::context! { subject => subject, items => items };
        Ok((
            self.templates.get_template("email.txt")?.render(&context)?,
            self.templates
                .get_template("email.html")?
                .render(&context)?,
        ))
    }

    /// Sends one message with `items` (one notification, or a digest) to `to`.
    pub async fn send(&self, to: &str, subject: &str, items: &[Item]) -> Attempted {
        let to: Mailbox = match to.parse() {
            Ok(to) => to,
            Err(error) => return Attempted::final_failure(0, format!("bad address: {error}")),
        };
        let (plain, html) = match self.render(subject, items) {
            Ok(parts) => parts,
            Err(error) => return Attempted::final_failure(0, format!("template: {error}")),
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(plain, html));
        let message = match message {
            Ok(m) => m,
            Err(error) => return Attempted::final_failure(0, format!("message: {error}")),
        };
        match self.transport.send(message).await {
            Ok(response) => Attempted {
                outcome: AttemptOutcome::Succeeded,
                code: response.code().to_string().parse().unwrap_or(250),
                error: String::new(),
                retry: false,
            },
            Err(error) => {
                let code = error
                    .status()
                    .and_then(|c| c.to_string().parse().ok())
                    .unwrap_or(0);
                let outcome = if error.is_timeout() {
                    AttemptOutcome::TimedOut
                } else {
                    AttemptOutcome::Failed
                };
                Attempted {
                    outcome,
                    code,
                    error: error.to_string(),
                    // 5xx replies are permanent: retrying the same message cannot help.
                    retry: !error.is_permanent(),
                }
            }
        }
    }
}
