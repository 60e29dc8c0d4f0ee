//! The engine: one per process. It keeps a Microsoft client per integration and runs syncs and
//! connection tests.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rampart_microsoft::ClientCredentials;
use rampart_microsoft::Overrides;
use rampart_microsoft::{ArmClient, ArmConfig, MdeClient, MdeConfig};
use rampart_model::{Integration, IntegrationId, Product, SyncRun};
use rampart_store::Store;
use tokio::sync::Mutex;

use crate::connection::{self, ConnectionReport};
use crate::error::SyncError;
use crate::options::{EngineOptions, SyncRequest};
use crate::progress::Progress;
use crate::run::RunSetup;
use crate::vault::{Sealed, Vault};
use crate::{cloud, cloud_connection, endpoint};

/// The Microsoft client of one integration: Defender for Endpoint's API or Azure Resource Manager.
#[derive(Clone)]
enum Client {
    Mde(MdeClient),
    Arm(ArmClient),
}

struct CachedClient {
    /// The integration's `updated_at` when the client was built: any edit (a new secret, another
    /// cloud) builds a new client.
    built_for: DateTime<Utc>,
    client: Client,
}

/// Runs syncs and connection tests. Share one per process (it is `Send + Sync`).
pub struct Engine {
    store: Arc<dyn Store>,
    vault: Vault,
    options: EngineOptions,
    clients: Mutex<HashMap<IntegrationId, CachedClient>>,
    /// Sends webhook deliveries (the scheduler's loop and "Send test").
    webhooks: crate::webhooks::Sender,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, vault: Vault, options: EngineOptions) -> Self {
        let webhooks = crate::webhooks::Sender::new(options.webhooks.clone());
        Self {
            store,
            vault,
            options,
            clients: Mutex::new(HashMap::new()),
            webhooks,
        }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The webhook sender.
    pub fn webhooks(&self) -> &crate::webhooks::Sender {
        &self.webhooks
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Runs one sync of `integration` and returns its record. A run that fails is recorded and
    /// returned with status `Failed` and its error; `Err` means no run could be started (another
    /// run of it is in progress, the store is unreachable, the secret cannot be decrypted).
    pub async fn sync(
        &self,
        integration: &Integration,
        request: SyncRequest,
        progress: &dyn Progress,
    ) -> Result<SyncRun, SyncError> {
        let setup = RunSetup {
            options: &self.options,
            store: &self.store,
            integration,
            request,
            progress,
        };
        let run = match integration.product {
            Product::Endpoint => {
                let client = self.mde_client(integration).await?;
                endpoint::run(setup, &client).await?
            }
            Product::Cloud => {
                let client = self.arm_client(integration).await?;
                cloud::run(setup, &client).await?
            }
        };
        // Alerts are queued here, whoever ran the sync (scheduler, "Sync now", the CLI); a
        // worker sends them. An alert that cannot be queued never fails the run.
        if let Err(error) = crate::webhooks::after_run(
            self.store.as_ref(),
            self.options.public_url.as_deref(),
            integration,
            &run,
        )
        .await
        {
            tracing::warn!(message = "Webhook alerts of a run could not be queued.", integration = %integration.name, run_id = run.id.get(), %error);
        }
        Ok(run)
    }

    /// Tests the connection step by step; never fails, every problem is a failed step.
    pub async fn test_connection(&self, integration: &Integration) -> ConnectionReport {
        match integration.product {
            Product::Endpoint => match self.mde_client(integration).await {
                Ok(client) => connection::test_endpoint(&client).await,
                Err(e) => ConnectionReport::setup_failed(&e),
            },
            Product::Cloud => match self.arm_client(integration).await {
                Ok(client) => cloud_connection::test_cloud(&client).await,
                Err(e) => ConnectionReport::setup_failed(&e),
            },
        }
    }

    /// The integration's Defender for Endpoint client, built once and kept while the integration
    /// is unchanged.
    async fn mde_client(&self, integration: &Integration) -> Result<MdeClient, SyncError> {
        match self.client(integration).await? {
            Client::Mde(c) => Ok(c),
            Client::Arm(_) => Err(SyncError::Unsupported(format!(
                "integration '{}' is not a Defender for Endpoint integration",
                integration.name
            ))),
        }
    }

    /// The integration's Azure Resource Manager client (Defender for Cloud).
    async fn arm_client(&self, integration: &Integration) -> Result<ArmClient, SyncError> {
        match self.client(integration).await? {
            Client::Arm(c) => Ok(c),
            Client::Mde(_) => Err(SyncError::Unsupported(format!(
                "integration '{}' is not a Defender for Cloud integration",
                integration.name
            ))),
        }
    }

    async fn client(&self, integration: &Integration) -> Result<Client, SyncError> {
        let mut clients = self.clients.lock().await;
        if let Some(cached) = clients.get(&integration.id)
            && cached.built_for == integration.updated_at
        {
            return Ok(cached.client.clone());
        }
        let stored = self.store.integration_secret(integration.id).await?;
        let secret = self.vault.open_secret(
            integration.name.as_str(),
            &Sealed {
                ciphertext: stored.ciphertext,
                nonce: stored.nonce,
            },
        )?;
        let credentials = ClientCredentials {
            tenant_id: integration.tenant_id.clone(),
            client_id: integration.client_id,
            client_secret: secret,
        };
        let overrides = Overrides {
            login_url: integration.login_url.clone(),
            api_url: integration.api_url.clone(),
            ..Overrides::default()
        };
        let client = match integration.product {
            Product::Endpoint => {
                let mut config = MdeConfig::new(integration.cloud, credentials);
                config.overrides = overrides;
                config.rate_limits = self.options.rate_limits.clone();
                config.retry = self.options.retry.clone();
                config.paging = self.options.paging.clone();
                Client::Mde(MdeClient::new(config)?)
            }
            Product::Cloud => {
                let mut config = ArmConfig::new(integration.cloud, credentials);
                config.overrides = overrides;
                config.rate_limits = self.options.rate_limits.clone();
                config.retry = self.options.retry.clone();
                config.paging = self.options.paging.clone();
                Client::Arm(ArmClient::new(config)?)
            }
        };
        clients.insert(
            integration.id,
            CachedClient {
                built_for: integration.updated_at,
                client: client.clone(),
            },
        );
        Ok(client)
    }
}
