//! An integration as a person gave it (a portal form, an API body, command-line options), and the
//! checks it passes before anything is stored.

use std::fmt;

use chrono::NaiveDate;
use rampart_model::{ClientId, Cloud, Integration, IntegrationName, Product, TenantId};
use secrecy::{ExposeSecret, SecretString};

/// The longest client secret accepted (Entra's are 40 characters; this only bounds hostile input).
const MAX_SECRET_LEN: usize = 1024;
/// Where a person finds the secret's Value; said wherever a secret is refused.
const PASTE_THE_VALUE: &str = "paste the secret's Value from Microsoft Entra (App registrations > your app > Certificates & secrets)";

/// An integration as a person typed it: all text, checked when it is added or changed.
#[derive(Debug, Default)]
pub struct IntegrationInput {
    pub name: String,
    pub product: String,
    /// Empty: commercial.
    pub cloud: String,
    pub tenant_id: String,
    pub client_id: String,
    /// `None` keeps the stored secret (on update).
    pub client_secret: Option<SecretString>,
    /// `YYYY-MM-DD` or empty.
    pub secret_expires: String,
    pub login_url: String,
    pub api_url: String,
    /// Empty: the product's default.
    pub schedule_minutes: String,
    pub enabled: bool,
}

/// Why a client secret as given cannot be an Entra secret. Never contains the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretProblem {
    /// None was given where one is needed (a new integration).
    Missing,
    Empty,
    TooLong,
    ControlCharacters,
}

impl SecretProblem {
    /// As a form shows it, beside the field's label.
    fn on_form(self) -> String {
        match self {
            SecretProblem::Missing => "Client secret: required; paste the secret's Value from Microsoft Entra (not its Secret ID)".into(),
            SecretProblem::Empty => format!("Client secret: it is empty; {PASTE_THE_VALUE}"),
            SecretProblem::TooLong => "Client secret: it is longer than any Entra secret".into(),
            SecretProblem::ControlCharacters => {
                "Client secret: it contains control characters; paste only the secret's Value".into()
            }
        }
    }
}

/// A sentence of its own, as the command line shows it.
impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretProblem::Missing => f.write_str(
                "no client secret given: paste the secret's Value from Microsoft Entra (not its Secret ID)",
            ),
            SecretProblem::Empty => write!(f, "the client secret is empty: {PASTE_THE_VALUE}"),
            SecretProblem::TooLong => f.write_str("the client secret is longer than any Entra secret"),
            SecretProblem::ControlCharacters => f.write_str(
                "the client secret contains control characters: paste only the secret's Value",
            ),
        }
    }
}

/// A client secret as pasted or read, without the line end that `echo` or a file adds, if it can
/// be an Entra secret.
pub fn check_secret(raw: &str) -> Result<SecretString, SecretProblem> {
    let secret = raw.trim_end_matches(['\n', '\r']);
    if secret.trim().is_empty() {
        Err(SecretProblem::Empty)
    } else if secret.len() > MAX_SECRET_LEN {
        Err(SecretProblem::TooLong)
    } else if secret.chars().any(char::is_control) {
        Err(SecretProblem::ControlCharacters)
    } else {
        Ok(SecretString::from(secret.to_owned()))
    }
}

/// One thing wrong with an integration as given. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputProblem {
    /// A field that does not parse, is out of range or may not change: the field's label, and
    /// what is wrong and what to do.
    Field {
        label: &'static str,
        message: String,
    },
    Secret(SecretProblem),
    /// A Defender for Endpoint integration in a cloud where Microsoft documents no such API, and
    /// no API URL of its own.
    NoEndpointApi(Cloud),
    /// The store refused it (a name already taken), in its words.
    Refused(String),
}

impl InputProblem {
    fn field(label: &'static str, message: impl fmt::Display) -> Self {
        InputProblem::Field {
            label,
            message: message.to_string(),
        }
    }

    /// As a form (or an API answer) shows it: starting with the field's label.
    pub fn on_form(&self) -> String {
        match self {
            InputProblem::Secret(p) => p.on_form(),
            InputProblem::NoEndpointApi(_) => format!("Cloud: {self}"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputProblem::Field { label, message } => write!(f, "{label}: {message}"),
            InputProblem::Secret(p) => p.fmt(f),
            InputProblem::NoEndpointApi(cloud) => write!(
                f,
                "Microsoft documents no Defender for Endpoint API in the {} cloud; choose commercial, gcc, gcc-high or dod, or give an API URL",
                cloud.label()
            ),
            InputProblem::Refused(m) => f.write_str(m),
        }
    }
}

/// What is wrong with an integration as given, one problem per field; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError(pub Vec<InputProblem>);

impl InputError {
    pub(super) fn one(problem: InputProblem) -> Self {
        InputError(vec![problem])
    }

    pub(super) fn field(label: &'static str, message: impl fmt::Display) -> Self {
        Self::one(InputProblem::field(label, message))
    }

    /// One line per problem, as a form lists them.
    pub fn on_form(&self) -> Vec<String> {
        self.0.iter().map(InputProblem::on_form).collect()
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, problem) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            problem.fmt(f)?;
        }
        Ok(())
    }
}

/// An [`IntegrationInput`] that passed the checks.
pub(super) struct Checked {
    pub name: IntegrationName,
    pub product: Product,
    pub cloud: Cloud,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub secret: Option<SecretString>,
    pub expires: Option<NaiveDate>,
    pub login_url: Option<String>,
    pub api_url: Option<String>,
    pub schedule_minutes: i64,
    pub enabled: bool,
}

fn check_url(label: &'static str, raw: &str, problems: &mut Vec<InputProblem>) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let well_formed = url::Url::parse(raw)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !well_formed {
        problems.push(InputProblem::field(
            label,
            "must be an http(s) URL such as https://login.example.com, or empty",
        ));
        return None;
    }
    // The clients' own rules (plain http only to this machine, no credentials in the URL), so
    // that a URL they would refuse is refused here, not at the first sync.
    match rampart_microsoft::check_override_url(label, raw) {
        Ok(()) => Some(raw.trim_end_matches('/').to_owned()),
        Err(e) => {
            problems.push(InputProblem::field(label, e));
            None
        }
    }
}

/// Parses a field, noting what is wrong under its label.
fn parse<T: std::str::FromStr<Err: fmt::Display>>(
    label: &'static str,
    raw: &str,
    problems: &mut Vec<InputProblem>,
) -> Option<T> {
    raw.parse::<T>()
        .map_err(|e| problems.push(InputProblem::field(label, e)))
        .ok()
}

impl IntegrationInput {
    /// Checks a new integration as [`super::Integrations::add`] will, touching nothing: for a
    /// caller that would otherwise create its database before the input is known to be good.
    pub fn check_new(&self) -> Result<(), InputError> {
        self.check(true).map(drop)
    }

    pub(super) fn check(&self, secret_required: bool) -> Result<Checked, InputError> {
        let mut problems = Vec::new();
        let name = parse::<IntegrationName>("Name", self.name.trim(), &mut problems);
        let product = parse::<Product>("Product", &self.product, &mut problems);
        let cloud = match self.cloud.trim() {
            "" => Some(Cloud::Commercial),
            _ => parse::<Cloud>("Cloud", &self.cloud, &mut problems),
        };
        let tenant_id = parse::<TenantId>("Tenant ID", self.tenant_id.trim(), &mut problems);
        let client_id = parse::<ClientId>("Client ID", self.client_id.trim(), &mut problems);
        let secret = match &self.client_secret {
            Some(s) => check_secret(s.expose_secret())
                .map_err(|p| problems.push(InputProblem::Secret(p)))
                .ok(),
            None if secret_required => {
                problems.push(InputProblem::Secret(SecretProblem::Missing));
                None
            }
            None => None,
        };
        let expires = match self.secret_expires.trim() {
            "" => None,
            d => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| {
                    problems.push(InputProblem::field(
                        "Secret expires",
                        "use a date like 2027-06-30",
                    ))
                })
                .ok(),
        };
        let login_url = check_url("Login URL", &self.login_url, &mut problems);
        let api_url = check_url("API URL", &self.api_url, &mut problems);
        if let (Some(product), Some(cloud)) = (product, cloud)
            && !rampart_microsoft::supports(cloud, product)
            && api_url.is_none()
            && self.api_url.trim().is_empty()
        {
            problems.push(InputProblem::NoEndpointApi(cloud));
        }
        let schedule_minutes = match self.schedule_minutes.trim() {
            "" => product.map_or(360, Integration::default_schedule_minutes),
            s => match s.parse::<i64>() {
                Ok(m) if (5..=10_080).contains(&m) => m,
                _ => {
                    problems.push(InputProblem::field(
                        "Schedule",
                        "minutes between syncs, from 5 to 10080 (one week)",
                    ));
                    360
                }
            },
        };
        match (name, product, cloud, tenant_id, client_id) {
            (Some(name), Some(product), Some(cloud), Some(tenant_id), Some(client_id))
                if problems.is_empty() =>
            {
                Ok(Checked {
                    name,
                    product,
                    cloud,
                    tenant_id,
                    client_id,
                    secret,
                    expires,
                    login_url,
                    api_url,
                    schedule_minutes,
                    enabled: self.enabled,
                })
            }
            _ => Err(InputError(problems)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_loses_its_line_end_and_nothing_else() {
        let s = check_secret("abc~DEF_123.xyz\r\n").expect("a secret");
        assert_eq!(s.expose_secret(), "abc~DEF_123.xyz");
        assert_eq!(check_secret(" \n").err(), Some(SecretProblem::Empty));
        assert_eq!(
            check_secret("a\u{7}b").err(),
            Some(SecretProblem::ControlCharacters)
        );
        assert_eq!(
            check_secret(&"x".repeat(MAX_SECRET_LEN + 1)).err(),
            Some(SecretProblem::TooLong)
        );
    }

    #[test]
    fn a_secret_problem_reads_as_a_sentence_and_beside_its_field() {
        assert!(
            SecretProblem::Empty
                .to_string()
                .starts_with("the client secret is empty: paste the secret's Value")
        );
        assert!(
            SecretProblem::Empty
                .on_form()
                .starts_with("Client secret: it is empty; paste the secret's Value")
        );
    }
}
