//! `rampart workspace add | list | remove`, and the `--workspace W` lookups of other commands
//! (docs/workspaces.md).

use std::process::ExitCode;

use rampart_store::{Store, StoreError, Visibility, Workspace};

use crate::cli::{Global, WorkspaceCommand};
use crate::context;
use crate::output::usage;

/// The workspace named `name`; an unknown name is a usage error that says how to list them.
pub(crate) async fn named(store: &dyn Store, name: &str) -> anyhow::Result<Workspace> {
    match store.get_workspace_by_name(name).await {
        Ok(w) => Ok(w),
        Err(StoreError::NotFound(m)) => Err(usage(m)),
        Err(e) => Err(e.into()),
    }
}

/// What `--workspace W` lets a command see: that workspace, or everything without the option.
pub(crate) async fn visibility(
    store: &dyn Store,
    name: Option<&str>,
) -> anyhow::Result<Visibility> {
    Ok(match name {
        Some(n) => Visibility::Workspaces(vec![named(store, n).await?.id]),
        None => Visibility::All,
    })
}

pub async fn run(global: &Global, command: WorkspaceCommand) -> anyhow::Result<ExitCode> {
    let store = context::open_store(global).await?;
    match command {
        WorkspaceCommand::Add { name } => {
            let w = match store.create_workspace(&name).await {
                Ok(w) => w,
                Err(StoreError::Conflict(m) | StoreError::InvalidInput(m)) => {
                    return Err(usage(m));
                }
                Err(e) => return Err(e.into()),
            };
            println!(
                "Added workspace '{}'. Add integrations to it with `rampart integration add --workspace '{}' …` and give accounts a role with `rampart user grant NAME --workspace '{}' --role viewer`.",
                w.name, w.name, w.name
            );
        }
        WorkspaceCommand::List => {
            let integrations = store.list_integrations(&Visibility::All).await?;
            println!("{:<6} {:<32} INTEGRATIONS", "ID", "NAME");
            for w in store.list_workspaces().await? {
                let held = integrations.iter().filter(|i| i.workspace_id == w.id);
                println!("{:<6} {:<32} {}", w.id, w.name, held.count());
            }
        }
        WorkspaceCommand::Remove { name } => {
            let w = named(store.as_ref(), &name).await?;
            match store.delete_workspace(w.id).await {
                Ok(()) => println!("Removed workspace '{}'.", w.name),
                Err(StoreError::Conflict(m)) => return Err(usage(m)),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
