//! The JSON of Azure Resource Manager's `Microsoft.Security` resources, in the shapes of <https://learn.microsoft.com/en-us/rest/api/defenderforcloud/>
//! (PascalCase `resourceDetails`, `additionalData` values as strings, mixed-case `type` strings,
//! 7-digit fractional timestamps) and the rows of the Resource Graph queries the client sends (<https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/work-with-data>).

use serde_json::{Value, json};

use crate::cloud_records::{CloudResource, CloudResourceKind, CloudSubscription};
use crate::time::{Ts, iso_ts};
use crate::world::World;
use crate::world::cloud::{CONTROLS, METADATA, SubscriptionView};

pub(crate) fn subscription(s: &CloudSubscription, tenant: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{}", s.subscription_id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": s.subscription_id,
        "tenantId": tenant,
        "displayName": s.display_name,
        "state": s.state,
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "EnterpriseAgreement_2014-09-01",
            "spendingLimit": "Off"
        },
        "tags": {}
    })
}

pub(crate) fn secure_score(v: &SubscriptionView) -> Value {
    let s = &v.score;
    json!({
        "id": format!("/subscriptions/{}/providers/Microsoft.Security/secureScores/ascScore", s.subscription_id),
        "name": "ascScore",
        "type": "Microsoft.Security/secureScores",
        "properties": {
            "displayName": "ASC score",
            "score": { "max": s.max, "current": s.current, "percentage": s.percentage },
            "weight": s.weight
        }
    })
}

fn definition(c: usize, casing_upper: bool) -> Value {
    let (id, name, max) = CONTROLS[c];
    let kind = if casing_upper {
        "Microsoft.Security/SecureScoreControlDefinitions"
    } else {
        "Microsoft.Security/secureScoreControlDefinitions"
    };
    let path = if casing_upper {
        "SecureScoreControlDefinitions"
    } else {
        "secureScoreControlDefinitions"
    };
    json!({
        "id": format!("/providers/Microsoft.Security/{path}/{id}"),
        "name": id,
        "type": kind,
        "properties": {
            "source": { "sourceType": "BuiltIn" },
            "displayName": name,
            "description": format!("This control contains recommendations regarding: {}", name.to_lowercase()),
            "maxScore": max,
            "assessmentDefinitions": METADATA.iter().filter(|m| m.control == c)
                .map(|m| json!({"id": format!("/providers/Microsoft.Security/assessmentMetadata/{}", m.key)}))
                .collect::<Vec<_>>()
        }
    })
}

pub(crate) fn control_definitions() -> Vec<Value> {
    (0..CONTROLS.len()).map(|c| definition(c, true)).collect()
}

/// The controls of a subscription. `null_score` sends the control "Apply system updates" with
/// `"score": null`, as Microsoft has been seen to.
pub(crate) fn controls(v: &SubscriptionView, expand: bool, null_score: bool) -> Vec<Value> {
    v.controls
        .iter()
        .map(|c| {
            let i = CONTROLS
                .iter()
                .position(|(id, _, _)| *id == c.control_id)
                .unwrap_or(0);
            let score = if null_score && i == NULL_SCORE_CONTROL {
                Value::Null
            } else {
                json!({ "max": c.max, "current": c.current, "percentage": c.percentage })
            };
            let mut props = json!({
                "displayName": c.display_name,
                "healthyResourceCount": c.healthy,
                "unhealthyResourceCount": c.unhealthy,
                "notApplicableResourceCount": c.not_applicable,
                "score": score,
                "weight": c.weight
            });
            if expand && let Some(map) = props.as_object_mut() {
                map.insert("definition".into(), definition(i, false));
            }
            json!({
                "id": format!("/subscriptions/{}/providers/Microsoft.Security/secureScores/ascScore/secureScoreControls/{}", c.subscription_id, c.control_id),
                "name": c.control_id,
                "type": "Microsoft.Security/secureScores/secureScoreControls",
                "properties": props
            })
        })
        .collect()
}

/// The control ("Apply system updates") the `null_control_score` data mode sends without a score.
pub(crate) const NULL_SCORE_CONTROL: usize = 3;

pub(crate) fn metadata() -> Vec<Value> {
    METADATA
        .iter()
        .map(|m| {
            json!({
                "id": format!("/providers/Microsoft.Security/assessmentMetadata/{}", m.key),
                "name": m.key,
                "type": "Microsoft.Security/assessmentMetadata",
                "properties": {
                    "displayName": m.name,
                    "policyDefinitionId": format!("/providers/Microsoft.Authorization/policyDefinitions/{}", m.key),
                    "description": m.description,
                    "remediationDescription": "Follow the steps in the recommendation's <a href=\"https://aka.ms/\">remediation guide</a>.",
                    "categories": [m.category],
                    "severity": m.severity,
                    "userImpact": "Low",
                    "implementationEffort": "Low",
                    "threats": ["dataExfiltration", "dataSpillage"],
                    "publishDates": { "GA": "06/01/2021", "public": "06/01/2021" },
                    "tactics": ["credentialAccess", "Initial Access"],
                    "assessmentType": "BuiltIn"
                }
            })
        })
        .collect()
}

fn resource_details(r: &CloudResource) -> Value {
    match r.kind {
        CloudResourceKind::Subscription => json!({ "Source": "Azure", "Id": r.id }),
        _ => json!({
            "Source": "Azure",
            "Id": r.id,
            "ResourceName": r.name,
            "ResourceType": r.resource_type,
            "ResourceProvider": r.provider,
            "NativeResourceId": r.id
        }),
    }
}

/// Every assessment of a subscription as the REST list returns it: built-in recommendations per
/// resource, then the individual `SoftwareUpdate` recommendations (no metadata over REST).
/// `with_risk`: api-version 2025-05-04, which adds `properties.risk` where Defender CSPM assessed it.
/// `ids_only`: `CvesDetails` entries carry only `CveId` (a data mode).
pub(crate) fn assessments(
    w: &World,
    v: &SubscriptionView,
    with_risk: bool,
    ids_only: bool,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(v.assessments.len() + v.updates.len());
    let resource_of = |id: &str| v.resources.iter().find(|r| r.id == id);
    for (i, a) in v.assessments.iter().enumerate() {
        let Some(r) = resource_of(&a.resource_id) else {
            continue;
        };
        let mut status = json!({
            "code": a.status,
            "firstEvaluationDate": "2026-06-02T10:11:12.1234567Z",
            "statusChangeDate": iso_ts(Ts::from_chrono(a.status_changed)),
        });
        if let (Some(cause), Some(map)) = (&a.cause, status.as_object_mut()) {
            map.insert("cause".into(), cause.clone().into());
            map.insert(
                "description".into(),
                "The effective policy for the assessment was evaluated to off".into(),
            );
        }
        let mut additional = serde_json::Map::new();
        if a.key == crate::world::cloud::VM_VULNS || a.key == crate::world::cloud::IMAGE_VULNS {
            additional.insert(
                "subAssessmentsLink".into(),
                format!("{}/subAssessments", a.id).into(),
            );
            let max = v
                .updates
                .iter()
                .filter(|u| v.resources[u.resource].id == a.resource_id && !u.healthy)
                .flat_map(|u| u.cves.iter().filter_map(|c| c.cvss))
                .fold(0.0f64, f64::max);
            if max > 0.0 {
                additional.insert("maxCvss30Score".into(), format!("{max}").into());
            }
        }
        if i % 3 == 0 {
            additional.insert("Tags".into(), "[\"managed\"]".into());
        }
        let mut item = json!({
            "type": if i % 2 == 0 { "Microsoft.Security/assessments" } else { "microsoft.security/assessments" },
            "id": a.id,
            "name": a.key,
            "properties": {
                "resourceDetails": resource_details(r),
                "displayName": a.display_name,
                "status": status,
                "additionalData": additional
            }
        });
        if with_risk
            && let (Some(risk), Some(props)) = (&a.risk, item["properties"].as_object_mut())
        {
            let paths: Vec<Value> = risk
                .attack_paths
                .iter()
                .map(|p| json!({"id": p, "nodes": [{"id": a.resource_id, "nodePropertiesLabel": ["Internet exposure"]}], "edges": []}))
                .collect();
            props.insert(
                "risk".into(),
                json!({
                    "level": risk.level,
                    "riskFactors": risk.factors,
                    "attackPathsReferences": risk.attack_paths,
                    "paths": paths,
                    "isContextualRisk": !risk.factors.is_empty()
                }),
            );
        }
        out.push(item);
    }
    for u in &v.updates {
        out.push(super::cloud_vuln_json::software_update(w, v, u, ids_only));
    }
    out
}

/// Secure-score rows (Learn's query, <https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/work-with-data>).
pub(crate) fn score_row(v: &SubscriptionView) -> Value {
    let s = &v.score;
    json!({
        "id": format!("/subscriptions/{}/providers/microsoft.security/securescores/ascscore", s.subscription_id),
        "subscriptionId": s.subscription_id,
        "current": s.current,
        "max": f64::from(s.max),
        "percentage": s.percentage,
        "weight": s.weight
    })
}

pub(crate) fn pricings(sub_index: usize, sub: &str) -> Vec<Value> {
    // The second subscription has no Defender for Servers but Defender CSPM with agentless machine
    // scanning, which produces the same machine vulnerability findings; the third has neither
    // (agentless scanning turned off): no vulnerability data would come from its machines in real
    // life, which `integration test` warns about.
    let plans = [
        ("VirtualMachines", sub_index == 0, Some("P2")),
        ("SqlServers", true, None),
        ("Containers", true, None),
        ("CloudPosture", true, None),
        ("KeyVaults", false, Some("PerKeyVault")),
    ];
    let agentless = if sub_index == 2 { "False" } else { "True" };
    plans
        .iter()
        .map(|(name, on, sub_plan)| {
            let mut props = json!({
                "pricingTier": if *on { "Standard" } else { "Free" },
                "freeTrialRemainingTime": "PT0S",
                "enforce": "False",
                "inherited": "False",
                "deprecated": false,
            });
            if let (Some(p), Some(map)) = (sub_plan, props.as_object_mut()) {
                map.insert("subPlan".into(), (*p).into());
            }
            if *on
                && *name == "VirtualMachines"
                && let Some(map) = props.as_object_mut()
            {
                map.insert(
                    "extensions".into(),
                    json!([{"name": "AgentlessVmScanning", "isEnabled": "True"}, {"name": "MdeDesignatedSubscription", "isEnabled": "False"}]),
                );
            }
            if *on
                && *name == "CloudPosture"
                && let Some(map) = props.as_object_mut()
            {
                map.insert(
                    "extensions".into(),
                    json!([
                        {"name": "SensitiveDataDiscovery", "isEnabled": "True"},
                        {"name": "ContainerRegistriesVulnerabilityAssessments", "isEnabled": "True"},
                        {"name": "AgentlessDiscoveryForKubernetes", "isEnabled": "True"},
                        {"name": "AgentlessVmScanning", "isEnabled": agentless},
                        {"name": "EntraPermissionsManagement", "isEnabled": "False"}
                    ]),
                );
            }
            json!({
                "id": format!("/subscriptions/{sub}/providers/Microsoft.Security/pricings/{name}"),
                "name": name,
                "type": "Microsoft.Security/pricings",
                "properties": props
            })
        })
        .collect()
}
