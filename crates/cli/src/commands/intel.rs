//! `rampart intel refresh | import kev FILE | status`: CISA's Known Exploited Vulnerabilities
//! catalogue, read now from its feed, imported from a downloaded file (sites without internet
//! access), or shown as stored. `serve` refreshes it daily on its own (see `rampart_web`'s
//! scheduler); these commands use the same code (`rampart_sync::intel`).

use std::process::ExitCode;

use chrono::Utc;
use rampart_model::export::rfc3339;
use rampart_store::{IntelSource, KEV_SOURCE};
use rampart_sync::intel::{
    IntelError, IntelRefreshError, KevClient, KevUpdate, import_kev_file, refresh_kev,
};

use crate::cli::{Global, IntelCommand, IntelSourceArg};
use crate::context;
use crate::output::usage;

pub async fn run(global: &Global, command: IntelCommand) -> anyhow::Result<ExitCode> {
    match command {
        IntelCommand::Refresh { feed } => {
            let client = KevClient::new(&feed.kev_url).map_err(|e| usage(e.to_string()))?;
            let store = context::open_store(global).await?;
            let update = refresh_kev(store.as_ref(), &client, Utc::now())
                .await
                .map_err(refresh_error)?;
            report(&update);
        }
        IntelCommand::Import {
            source: IntelSourceArg::Kev,
            file,
        } => {
            let store = context::open_store(global).await?;
            let update = import_kev_file(store.as_ref(), &file, Utc::now())
                .await
                .map_err(refresh_error)?;
            report(&update);
        }
        IntelCommand::Status => {
            let store = context::open_store(global).await?;
            match store.intel_source(KEV_SOURCE).await? {
                Some(source) => print!("{}", status(&source)),
                None => println!(
                    "The KEV catalogue has not been loaded yet. Run `rampart intel refresh` (`rampart serve` also does it daily), or on a site without internet access download {} and run `rampart intel import kev FILE`.",
                    rampart_sync::intel::DEFAULT_KEV_URL
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A file or download that is not the catalogue is bad input (exit 2, like a bad argument);
/// the network or the database failing is not (exit 1).
fn refresh_error(e: IntelRefreshError) -> anyhow::Error {
    let message = format!("KEV catalogue not replaced: {e}");
    match e {
        IntelRefreshError::File { .. }
        | IntelRefreshError::Feed(
            IntelError::InvalidUrl { .. }
            | IntelError::NotTheFeed { .. }
            | IntelError::Truncated { .. }
            | IntelError::TooLarge { .. },
        ) => usage(message),
        IntelRefreshError::Feed(_) | IntelRefreshError::Store(_) => anyhow::anyhow!(message),
    }
}

fn report(update: &KevUpdate) {
    let s = &update.source;
    let version = s.catalog_version.as_deref().unwrap_or("without a version");
    if update.replaced {
        println!(
            "KEV catalogue {version} stored: {} entries from {}.",
            s.count,
            s.url.as_deref().unwrap_or("?")
        );
    } else {
        println!(
            "KEV catalogue {version} is current ({} entries): {} answered that it has not changed.",
            s.count,
            s.url.as_deref().unwrap_or("the feed")
        );
    }
    if let Some(warning) = &update.warning {
        eprintln!("warning: {warning}");
    }
}

/// `intel status` in lines of `label: value`.
fn status(s: &IntelSource) -> String {
    let time = |t: &Option<chrono::DateTime<Utc>>| t.as_ref().map_or("never".into(), rfc3339);
    let mut lines = vec![
        format!("source:           {}", s.source),
        format!(
            "version:          {}",
            s.catalog_version.as_deref().unwrap_or("—")
        ),
        format!("released:         {}", time(&s.date_released)),
        format!("entries:          {}", s.count),
        format!("fetched at:       {}", time(&s.fetched_at)),
        format!("last attempt:     {}", time(&s.attempted_at)),
        format!("from:             {}", s.url.as_deref().unwrap_or("—")),
    ];
    if let Some(error) = &s.last_error {
        lines.push(format!("last error:       {error}"));
    }
    if let Some(fetched) = s.fetched_at {
        let days = (Utc::now() - fetched).num_days();
        if days >= 2 {
            lines.push(format!(
                "warning:          the catalogue is {days} days old; run `rampart intel refresh` or import a new copy"
            ));
        }
    }
    lines.join("\n") + "\n"
}
