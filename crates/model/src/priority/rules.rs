//! The organisation's own asset criticality: rules such as `tag:pci → high` that set an asset's
//! SSVC Human Impact where Microsoft's `deviceValue` cannot say enough (only a rule can say
//! *very high*, for safety-critical or mission-failure systems).

use serde::{Deserialize, Serialize};

use super::decision::HumanImpact;
use crate::Asset;

/// Which assets a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "match", content = "value", rename_all = "kebab-case")]
pub enum AssetMatcher {
    /// An MDE machine tag, compared exactly but without regard to case.
    Tag(String),
    /// An MDE device group (`rbacGroupName`), without regard to case.
    DeviceGroup(String),
    /// The asset's name (DNS name for devices); `*` matches any run of characters, case ignored.
    NameGlob(String),
    /// An Azure resource id prefix such as `/subscriptions/…/resourcegroups/prod-`, case ignored;
    /// tested against both the asset's own id and the Azure id of an MDE device.
    ResourceIdPrefix(String),
}

/// One criticality rule: the assets it matches get at least this Human Impact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalityRule {
    /// Shown as the reason (`criticality rule "pci"`).
    pub name: String,
    #[serde(flatten)]
    pub matcher: AssetMatcher,
    pub criticality: HumanImpact,
}

/// The rule that decided an asset's criticality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalityMatch {
    pub rule: String,
    pub criticality: HumanImpact,
}

impl AssetMatcher {
    pub fn matches(&self, asset: &Asset) -> bool {
        match self {
            AssetMatcher::Tag(tag) => asset
                .tags
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case(tag.trim())),
            AssetMatcher::DeviceGroup(group) => asset
                .rbac_group_name
                .as_deref()
                .is_some_and(|g| g.trim().eq_ignore_ascii_case(group.trim())),
            AssetMatcher::NameGlob(glob) => asset
                .name
                .as_deref()
                .is_some_and(|name| glob_matches(&glob.to_lowercase(), &name.to_lowercase())),
            AssetMatcher::ResourceIdPrefix(prefix) => {
                let prefix = prefix.trim().to_ascii_lowercase();
                [
                    Some(asset.source_id.as_str()),
                    asset.azure_resource_id.as_deref(),
                ]
                .into_iter()
                .flatten()
                .any(|id| id.to_ascii_lowercase().starts_with(&prefix))
            }
        }
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn glob_matches(glob: &str, text: &str) -> bool {
    let mut pieces = glob.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        // No `*` at all: the whole text must equal the glob.
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The highest criticality any rule gives `asset` (rules combine by maximum, so adding a rule
/// never makes an asset less critical). The first rule at that level names the reason.
pub fn criticality_for(asset: &Asset, rules: &[CriticalityRule]) -> Option<CriticalityMatch> {
    let mut best: Option<&CriticalityRule> = None;
    for rule in rules.iter().filter(|r| r.matcher.matches(asset)) {
        if best.is_none_or(|b| rule.criticality > b.criticality) {
            best = Some(rule);
        }
    }
    best.map(|r| CriticalityMatch {
        rule: r.name.clone(),
        criticality: r.criticality,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::AssetKind;

    pub(crate) fn device(name: &str, tags: &[&str]) -> Asset {
        Asset {
            name: Some(name.into()),
            os_platform: Some("Windows11".into()),
            health_status: Some("Active".into()),
            onboarding_status: Some("Onboarded".into()),
            exposure_level: Some("Medium".into()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            rbac_group_name: Some("Servers".into()),
            azure_resource_id: Some(
                "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/prod-web/providers/microsoft.compute/virtualmachines/web1".into(),
            ),
            ..Asset::new(
                "0123456789abcdef0123456789abcdef01234567",
                AssetKind::Device,
            )
        }
    }

    fn rule(name: &str, matcher: AssetMatcher, criticality: HumanImpact) -> CriticalityRule {
        CriticalityRule {
            name: name.into(),
            matcher,
            criticality,
        }
    }

    #[test]
    fn each_matcher_matches_what_it_says() {
        let asset = device("web1.contoso.com", &["PCI", "prod"]);
        assert!(AssetMatcher::Tag("pci".into()).matches(&asset));
        assert!(!AssetMatcher::Tag("pc".into()).matches(&asset));
        assert!(AssetMatcher::DeviceGroup("servers".into()).matches(&asset));
        assert!(AssetMatcher::NameGlob("web*.contoso.com".into()).matches(&asset));
        assert!(AssetMatcher::NameGlob("*.CONTOSO.com".into()).matches(&asset));
        assert!(!AssetMatcher::NameGlob("web*.fabrikam.com".into()).matches(&asset));
        assert!(
            AssetMatcher::ResourceIdPrefix(
                "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/prod-".into()
            )
            .matches(&asset)
        );
    }

    #[test]
    fn globs() {
        for (glob, text, expected) in [
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("*", "", true),
            ("a*", "a", true),
            ("*c", "abc", true),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("a**c", "ac", true),
        ] {
            assert_eq!(glob_matches(glob, text), expected, "{glob} vs {text}");
        }
    }

    #[test]
    fn rules_combine_by_maximum_and_name_the_reason() {
        let asset = device("db1", &["pci", "lab"]);
        let rules = [
            rule("lab", AssetMatcher::Tag("lab".into()), HumanImpact::Low),
            rule("pci", AssetMatcher::Tag("pci".into()), HumanImpact::High),
            rule(
                "also-high",
                AssetMatcher::NameGlob("db*".into()),
                HumanImpact::High,
            ),
            rule(
                "other",
                AssetMatcher::Tag("ot".into()),
                HumanImpact::VeryHigh,
            ),
        ];
        assert_eq!(
            criticality_for(&asset, &rules),
            Some(CriticalityMatch {
                rule: "pci".into(),
                criticality: HumanImpact::High
            })
        );
        assert_eq!(criticality_for(&asset, &rules[3..]), None);
    }

    #[test]
    fn a_rule_reads_and_writes_as_plain_json() {
        let json = r#"{"name":"pci","match":"tag","value":"pci","criticality":"high"}"#;
        let parsed: CriticalityRule = serde_json::from_str(json).unwrap();
        assert_eq!(
            parsed,
            rule("pci", AssetMatcher::Tag("pci".into()), HumanImpact::High)
        );
        assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
    }
}
