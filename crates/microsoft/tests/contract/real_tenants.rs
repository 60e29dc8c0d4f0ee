//! Issue 11 ("real tenants"): what Microsoft documents and the emulator reproduces, and the client
//! survives, over real HTTP. Each test names the Microsoft behaviour it follows.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rampart_microsoft::FindingRow;
use rampart_microsoft::{ApiError, FileReadOptions, MdeClient, PagingOptions, ReadEnd};

use crate::emulator::{client, config_for, start};
use rampart_sim::{RunningSim, SimConfig};

/// get-machines, "Response": "If no recent machines found - 404 Not Found."
#[tokio::test]
async fn issue11_an_empty_tenant_answers_404_and_reads_as_empty_and_complete() {
    let running = start(SimConfig {
        devices: 0,
        ..SimConfig::default()
    })
    .await;
    let c = client(&running);
    // The emulator answers as Microsoft documents.
    let raw = reqwest::Client::new()
        .get(format!("{}/api/machines", running.url))
        .bearer_auth(raw_token(&running).await)
        .send()
        .await
        .expect("answer");
    assert_eq!(raw.status().as_u16(), 404);

    // The client reads it as an empty, complete set.
    let (machines, report) = c.machines().collect_all().await.expect("an empty read");
    assert!(machines.is_empty());
    assert!(report.complete, "{report:?}");
    assert_eq!(report.reason, ReadEnd::NothingThere);
    assert!(c.read_one_machine().await.expect("no error").is_none());
}

async fn raw_token(running: &RunningSim) -> String {
    let c = running.sim.config();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("client_secret", c.client_secret.as_str()),
        ("scope", "https://api.securitycenter.microsoft.com/.default"),
    ];
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/{}/oauth2/v2.0/token", running.url, c.tenant_id))
        .form(&form)
        .send()
        .await
        .expect("token answer")
        .json()
        .await
        .expect("token json");
    v["access_token"].as_str().expect("access_token").to_owned()
}

/// Entra throttles client-credential token requests with 429 and `Retry-After: 60`
/// (learn.microsoft.com/en-us/entra/msal/dotnet/advanced/client-and-server-throttling); the body
/// may be Entra's JSON error or plain text.
#[tokio::test]
async fn issue11_a_throttled_token_request_waits_for_retry_after_whatever_the_body() {
    let running = start(SimConfig {
        devices: 3,
        ..SimConfig::default()
    })
    .await;
    for json in [true, false] {
        running.sim.faults().throttle_tokens(1, 1, json);
        let c = client(&running);
        let began = Instant::now();
        let check = c.check_token().await.expect("a token after the wait");
        assert!(check.is_ready());
        assert!(
            began.elapsed() >= Duration::from_secs(1),
            "Retry-After: 1 was not waited for (json body: {json})"
        );
        assert_eq!(c.metrics().token_requests, 2, "json body: {json}");
        assert_eq!(c.metrics().throttled, 1, "json body: {json}");
    }
}

/// get-assessment-software-vulnerabilities, "Export via files": the files are gzip JSON lines;
/// whether the blob also says `Content-Encoding: gzip` is not documented. Both must read the same.
#[tokio::test]
async fn issue11_export_files_read_the_same_with_or_without_content_encoding() {
    let mut counts = Vec::new();
    for encoded in [false, true] {
        let running = start(SimConfig {
            devices: 25,
            findings_per_device: 5,
            blob_content_encoding: encoded,
            ..SimConfig::default()
        })
        .await;
        let c = client(&running);
        let listing = c.export_files(1).await.expect("listing");
        let (rows, report) = c
            .export_records::<FindingRow>(listing, FileReadOptions::default())
            .collect_all()
            .await
            .expect("files read");
        assert!(report.complete, "encoded {encoded}: {report:?}");
        let with_cve = rows.iter().filter(|r| r.cve_id.is_some()).count();
        assert_eq!(
            with_cve,
            running.sim.truth().findings().count(),
            "encoded {encoded}"
        );
        counts.push(rows.len());
    }
    assert_eq!(counts[0], counts[1]);
}

/// get-all-vulnerabilities: `updatedOn` is filterable (`$filter=updatedOn gt …`): the catalogue
/// can be read incrementally.
#[tokio::test]
async fn issue11_the_catalogue_is_read_incrementally_by_updated_on() {
    let running = start(SimConfig {
        devices: 10,
        ..SimConfig::default()
    })
    .await;
    let mut updated: Vec<DateTime<Utc>> = running
        .sim
        .truth()
        .vulnerabilities()
        .map(|v| v.updated_on)
        .collect();
    updated.sort();
    let since = updated[updated.len() / 2];
    let want = updated.iter().filter(|t| **t > since).count();
    assert!(want > 0 && want < updated.len());
    let mut cfg = config_for(&running);
    cfg.paging = PagingOptions {
        vulnerabilities_page_size: 50,
        ..PagingOptions::default()
    };
    let c = MdeClient::new(cfg).expect("client");
    let (rows, report) = c
        .vulnerabilities_updated_since(since)
        .collect_all()
        .await
        .expect("incremental read");
    assert!(report.complete, "{report:?}");
    assert_eq!(rows.len(), want);
    for v in rows {
        let model = v.into_model().expect("a CVE");
        assert!(model.updated_on.expect("updatedOn") > since);
        assert!(
            model.source_exposed_machines.is_some(),
            "exposedMachines kept"
        );
    }
}

/// get-machines: the main example carries `lastIpAddress` and `lastExternalIpAddress` but no
/// `ipAddresses`; `osBuild`, `osProcessor` and `isAadJoined` are kept.
#[tokio::test]
async fn issue11_machines_without_ip_addresses_keep_their_last_and_external_address() {
    let running = start(SimConfig {
        devices: 15,
        machines_without_ip_addresses: true,
        ..SimConfig::default()
    })
    .await;
    let truth: Vec<_> = running.sim.truth().machines().collect();
    let (machines, report) = client(&running)
        .machines()
        .collect_all()
        .await
        .expect("machines");
    assert!(report.complete);
    assert_eq!(machines.len(), truth.len());
    let mut with_ip = 0;
    for m in machines {
        assert!(m.ip_addresses.is_empty(), "served without ipAddresses");
        let t = truth.iter().find(|t| t.id == m.id).expect("known device");
        let asset = m.into_asset();
        match &t.last_ip_address {
            Some(ip) => {
                with_ip += 1;
                assert_eq!(asset.ip_addresses, vec![ip.clone()]);
            }
            None => assert!(asset.ip_addresses.is_empty()),
        }
        assert_eq!(asset.external_ip_address, t.last_external_ip_address);
        assert!(
            !asset
                .ip_addresses
                .iter()
                .any(|a| Some(a) == t.last_external_ip_address.as_ref()),
            "the external address is kept apart"
        );
        assert_eq!(asset.os_build, t.os_build.map(i64::from));
        assert_eq!(asset.os_processor, t.os_processor);
        assert_eq!(asset.is_aad_joined, Some(t.is_aad_joined));
    }
    assert!(with_ip > 0);
}

/// Microsoft adds fields and values without notice: one record of an unexpected shape is
/// skipped, counted and named, and the read still concludes.
#[tokio::test]
async fn issue11_one_odd_record_is_skipped_and_named_and_the_read_concludes() {
    let running = start(SimConfig {
        devices: 12,
        ..SimConfig::default()
    })
    .await;
    running.sim.faults().odd_record_next("/api/machines", 1);
    let (machines, report) = client(&running)
        .machines()
        .collect_all()
        .await
        .expect("machines");
    assert_eq!(machines.len(), running.sim.truth().machines().count());
    assert_eq!(report.unreadable, 1);
    assert_eq!(report.unreadable_ids.len(), 1);
    assert!(
        report.unreadable_ids[0].starts_with("odd-record-"),
        "{:?}",
        report.unreadable_ids
    );
    assert!(report.first_unreadable.is_some());
    assert!(report.complete, "{report:?}");
}

/// ...but when many records are odd, Rampart no longer understands the answer: the read does not
/// conclude.
#[tokio::test]
async fn issue11_many_odd_records_make_the_read_incomplete() {
    let running = start(SimConfig {
        devices: 12,
        ..SimConfig::default()
    })
    .await;
    running.sim.faults().odd_record_next("/api/machines", 20);
    let mut cfg = config_for(&running);
    cfg.paging = PagingOptions {
        machines_page_size: 2,
        ..PagingOptions::default()
    };
    let (_, report) = MdeClient::new(cfg)
        .expect("client")
        .machines()
        .collect_all()
        .await
        .expect("machines");
    assert!(report.unreadable > 1, "{report:?}");
    assert!(!report.complete);
    assert!(matches!(report.reason, ReadEnd::UnreadableRecords { .. }));
}

/// A body that arrives whole but is not JSON is not a network fault: it is reported at once with
/// its byte offset and a sample, not retried seven times as "Microsoft may be having trouble".
#[tokio::test]
async fn issue11_invalid_json_is_reported_at_once_with_offset_and_sample() {
    let running = start(SimConfig {
        devices: 8,
        ..SimConfig::default()
    })
    .await;
    running.sim.faults().garble_next("/api/machines", 10);
    let c = client(&running);
    let err = c
        .machines()
        .collect_all()
        .await
        .expect_err("invalid JSON fails");
    match &err {
        ApiError::MalformedBody { offset, sample, .. } => {
            assert!(*offset > 0, "{err}");
            assert!(sample.contains("NaN"), "{err}");
        }
        other => panic!("expected MalformedBody, got {other}"),
    }
    assert!(!err.to_string().contains("may be having trouble"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(c.metrics().retries, 0, "not retried");
    assert_eq!(c.metrics().api_calls, 1);
}

/// Devices whose vulnerability rows Microsoft serves while `GET /api/machines` does not list them
/// (retention, device-group scoping; Microsoft's own examples do this): the rows name the device
/// and its OS.
#[tokio::test]
async fn issue11_rows_of_unlisted_devices_carry_name_and_os() {
    let running = start(SimConfig {
        devices: 40,
        findings_per_device: 5,
        unlisted_device_share: 0.3,
        ..SimConfig::default()
    })
    .await;
    let truth = running.sim.truth();
    let unlisted: Vec<_> = truth.unlisted_machines().collect();
    assert!(!unlisted.is_empty());
    let listed: Vec<_> = truth.machines().collect();
    for u in &unlisted {
        assert!(!listed.iter().any(|m| m.id == u.id));
    }
    let c = client(&running);
    let (rows, report) = c
        .software_vulnerability_rows::<FindingRow>(1_000)
        .collect_all()
        .await
        .expect("rows");
    assert!(report.complete);
    let u = &unlisted[0];
    let finding = rows
        .into_iter()
        .filter(|r| r.device_id.as_deref() == Some(u.id.as_str()))
        .find_map(|r| r.into_finding().ok())
        .expect("a finding of the unlisted device");
    assert_eq!(finding.asset_name, u.computer_dns_name);
    assert!(finding.asset_os_platform.is_some());
}
