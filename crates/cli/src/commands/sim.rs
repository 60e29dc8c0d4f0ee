//! `rampart sim`: the emulator on its own, for trying Rampart (or any client) without a tenant.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use rampart_sim::{Sim, SimConfig};

use crate::cli::{OnOff, SimArgs};
use crate::output::usage;

pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let mut config = SimConfig {
        seed: args.seed,
        devices: args.devices,
        findings_per_device: args.findings_per_device,
        rate_limits: !args.no_rate_limits,
        fault_rate: args.fault_rate,
        secret_expired: args.secret_expired,
        ..SimConfig::default()
    };
    if let (Some(t), Some(c), Some(s)) = (args.tenant_id, args.client_id, args.client_secret) {
        config.tenant_id = t.to_string();
        config.client_id = c.to_string();
        config.client_secret = s;
    }
    if let Some(roles) = args.roles {
        config.roles = Some(roles.into_iter().filter(|r| !r.trim().is_empty()).collect());
    }
    let sim = Sim::new(config.clone()).map_err(|e| usage(e.to_string()))?;
    sim.set_compression(args.compression == OnOff::On);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let url = format!("http://{addr}");

    println!("Rampart emulator of Microsoft Entra ID and Defender for Endpoint");
    println!(
        "  login URL      {url}      (token: {url}/{}/oauth2/v2.0/token)",
        config.tenant_id
    );
    println!("  API URL        {url}      (devices: {url}/api/machines)");
    println!("  tenant ID      {}", config.tenant_id);
    println!("  client ID      {}", config.client_id);
    println!("  client secret  {}", config.client_secret);
    println!(
        "  data           seed {}, {} devices, ~{} findings per device",
        config.seed, config.devices, config.findings_per_device
    );
    println!("Try it with Rampart:");
    println!(
        "  printf '%s' '{}' | rampart integration add --name sim --product endpoint --tenant-id {} --client-id {} --client-secret-stdin --login-url {url} --api-url {url}",
        config.client_secret, config.tenant_id, config.client_id
    );
    println!("  rampart sync sim");
    println!("Press Ctrl-C to stop.");

    if let Some(every) = args.tick_every {
        let ticker = sim.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(every.max(1)));
            interval.tick().await;
            loop {
                interval.tick().await;
                ticker.tick(1);
                tracing::info!(message = "Simulated tenant advanced one snapshot.");
            }
        });
    }

    tokio::select! {
        served = rampart_sim::serve(sim, listener) => served.context("the emulator stopped")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(ExitCode::SUCCESS)
}
