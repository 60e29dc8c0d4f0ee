//! An integration: one Entra app registration connected to one Microsoft product in one cloud.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, IntegrationName, TenantId};

/// Database identity of an integration: a type of its own, so that it cannot be swapped with a
/// run's, a workspace's or any other number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IntegrationId(pub i64);

impl IntegrationId {
    /// The number the database keys it by.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for IntegrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for IntegrationId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(IntegrationId)
    }
}

/// Database identity of a workspace (one customer or team; docs/workspaces.md). Every integration
/// belongs to exactly one; [`WorkspaceId::DEFAULT`] is created by the migration that introduced
/// them, so a single team never has to think about workspaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkspaceId(pub i64);

impl WorkspaceId {
    /// The workspace "Default" (id 1), which every integration created before workspaces existed
    /// belongs to.
    pub const DEFAULT: WorkspaceId = WorkspaceId(1);
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which Microsoft product an integration reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    /// Microsoft Defender for Endpoint: devices and TVM vulnerabilities.
    Endpoint,
    /// Microsoft Defender for Cloud: posture and cloud vulnerability findings.
    Cloud,
}

impl Product {
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Endpoint => "endpoint",
            Product::Cloud => "cloud",
        }
    }

    /// The product's name as people know it.
    pub fn label(self) -> &'static str {
        match self {
            Product::Endpoint => "Defender for Endpoint",
            Product::Cloud => "Defender for Cloud",
        }
    }

    /// The `source` column of exported records.
    pub fn source(self) -> &'static str {
        match self {
            Product::Endpoint => "defender-endpoint",
            Product::Cloud => "defender-cloud",
        }
    }
}

impl FromStr for Product {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "endpoint" | "mde" => Ok(Product::Endpoint),
            "cloud" | "mdc" => Ok(Product::Cloud),
            _ => Err(format!(
                "unknown product '{}': choose 'endpoint' (Defender for Endpoint) or 'cloud' (Defender for Cloud)",
                s.chars().take(40).collect::<String>()
            )),
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Microsoft cloud a tenant lives in. It decides the login and API hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    #[default]
    Commercial,
    Gcc,
    GccHigh,
    Dod,
    China,
}

impl Cloud {
    pub const ALL: [Cloud; 5] = [
        Cloud::Commercial,
        Cloud::Gcc,
        Cloud::GccHigh,
        Cloud::Dod,
        Cloud::China,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Commercial => "commercial",
            Cloud::Gcc => "gcc",
            Cloud::GccHigh => "gcc-high",
            Cloud::Dod => "dod",
            Cloud::China => "china",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Cloud::Commercial => "Commercial",
            Cloud::Gcc => "US Government GCC",
            Cloud::GccHigh => "US Government GCC High",
            Cloud::Dod => "US Government DoD",
            Cloud::China => "China (21Vianet)",
        }
    }
}

impl FromStr for Cloud {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "commercial" | "public" | "global" => Ok(Cloud::Commercial),
            "gcc" => Ok(Cloud::Gcc),
            "gcc-high" | "gcchigh" => Ok(Cloud::GccHigh),
            "dod" => Ok(Cloud::Dod),
            "china" | "21vianet" => Ok(Cloud::China),
            _ => Err(format!(
                "unknown cloud '{}': choose commercial, gcc, gcc-high, dod or china",
                s.chars().take(40).collect::<String>()
            )),
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What may be shown of a stored secret: its last four characters and the expiry date the user gave.
/// Never more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHint {
    /// The last four characters of the secret (fewer when the secret is shorter than 12 characters,
    /// so that a short secret is never mostly revealed).
    pub last4: String,
    pub expires_on: Option<NaiveDate>,
}

impl SecretHint {
    pub fn of(secret: &str, expires_on: Option<NaiveDate>) -> Self {
        let chars: Vec<char> = secret.chars().collect();
        let shown = if chars.len() >= 12 {
            4
        } else {
            chars.len() / 4
        };
        let last4 = chars[chars.len() - shown..].iter().collect();
        Self { last4, expires_on }
    }

    /// `••••a1b2`
    pub fn masked(&self) -> String {
        format!("••••{}", self.last4)
    }

    /// Days until the secret expires (negative once expired), if the user gave a date.
    pub fn days_left(&self, today: NaiveDate) -> Option<i64> {
        self.expires_on.map(|d| (d - today).num_days())
    }
}

/// An integration as stored, without its secret (which only the store and the sync engine see, and
/// only encrypted or inside a `secrecy` box).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub id: IntegrationId,
    /// The workspace whose members may see and (admins) change it.
    pub workspace_id: WorkspaceId,
    pub name: IntegrationName,
    pub product: Product,
    pub cloud: Cloud,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub secret_hint: SecretHint,
    /// Overrides of the cloud's login host (`https://login.microsoftonline.com`), e.g. the emulator.
    pub login_url: Option<String>,
    /// Overrides of the cloud's API host, e.g. the emulator, a proxy or a regional host.
    pub api_url: Option<String>,
    /// Minutes between scheduled syncs.
    pub schedule_minutes: i64,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Integration {
    /// Default schedule: Endpoint every 6 h (in step with Microsoft's snapshot), Cloud every 8 h.
    pub fn default_schedule_minutes(product: Product) -> i64 {
        match product {
            Product::Endpoint => 6 * 60,
            Product::Cloud => 8 * 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_never_reveals_much_of_a_short_secret() {
        assert_eq!(
            SecretHint::of("abcdefghijklmnop", None).masked(),
            "••••mnop"
        );
        assert_eq!(SecretHint::of("abcdefgh", None).last4, "gh");
        assert_eq!(SecretHint::of("abc", None).last4, "");
        assert_eq!(SecretHint::of("", None).last4, "");
    }

    #[test]
    fn product_and_cloud_parse_with_helpful_errors() {
        assert_eq!("Endpoint".parse::<Product>().unwrap(), Product::Endpoint);
        assert!(
            "server"
                .parse::<Product>()
                .unwrap_err()
                .contains("endpoint")
        );
        assert_eq!("gcc_high".parse::<Cloud>().unwrap(), Cloud::GccHigh);
        assert!("mars".parse::<Cloud>().is_err());
    }
}
