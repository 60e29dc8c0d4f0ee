//! Starting the emulator and pointing a client at its demo app, shared by the modules that talk to
//! it over HTTP.

use std::time::Duration;

use rampart_microsoft::{ArmClient, ClientConfig, ClientCredentials, MdeClient, RetryPolicy};
use rampart_model::Cloud;
use rampart_sim::{RunningSim, SimConfig};
use secrecy::SecretString;

pub async fn start(config: SimConfig) -> RunningSim {
    rampart_sim::spawn(config).await.expect("emulator starts")
}

/// Settings for the emulator's demo app, both the token request and the API calls going to it.
pub fn demo_app(running: &RunningSim) -> ClientConfig {
    let c = running.sim.config();
    ClientConfig::new(
        Cloud::Commercial,
        ClientCredentials {
            tenant_id: c.tenant_id.parse().expect("tenant"),
            client_id: c.client_id.parse().expect("client"),
            client_secret: SecretString::from(c.client_secret.clone()),
        },
    )
    .with_base_url(&running.url)
}

/// [`demo_app`] with test-speed retries.
pub fn config_for(running: &RunningSim) -> ClientConfig {
    let mut cfg = demo_app(running);
    cfg.retry = RetryPolicy::with_base_delay(Duration::from_millis(5));
    cfg
}

pub fn client(running: &RunningSim) -> MdeClient {
    MdeClient::new(config_for(running)).expect("client")
}

/// The emulator with `config`, and an ARM client of its demo app with the settings `adjust` sets.
pub async fn arm_client(
    config: SimConfig,
    adjust: impl FnOnce(&mut ClientConfig),
) -> (RunningSim, ArmClient) {
    let sim = start(config).await;
    let mut cfg = demo_app(&sim);
    adjust(&mut cfg);
    let client = ArmClient::new(cfg).expect("client");
    (sim, client)
}
