//! `rampart user add | passwd | remove`.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::Context;
use rampart_store::Role as StoreRole;
use secrecy::SecretString;

use crate::cli::{Global, Role, UserCommand};
use crate::context;
use crate::output::usage;

pub async fn run(global: &Global, command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add { name, role, .. } => {
            let password = read_password()?;
            let store = context::open_store(global).await?;
            let role = store_role(role);
            let user = rampart_web::create_user(
                store.as_ref(),
                &name,
                role,
                &password,
                rampart_web::PasswordChosenBy::Owner,
                "cli",
            )
            .await
            .map_err(web_error)?;
            println!("Added {} account '{}'.", role.as_str(), user.name);
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Passwd { name, .. } => {
            let password = read_password()?;
            let store = context::open_store(global).await?;
            let user = rampart_web::set_user_password(store.as_ref(), &name, &password, "cli")
                .await
                .map_err(web_error)?;
            println!(
                "Changed the password of '{}'; its portal sessions have ended.",
                user.name
            );
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Grant {
            name,
            workspace,
            role,
        } => {
            let store = context::open_store(global).await?;
            let user = account(store.as_ref(), &name).await?;
            let w = super::workspace::named(store.as_ref(), &workspace).await?;
            let role = store_role(role);
            store.grant_membership(user.id, w.id, role).await?;
            audit(
                store.as_ref(),
                "user.grant",
                &user.name,
                &format!("{} of workspace '{}'", role.as_str(), w.name),
            )
            .await?;
            println!(
                "'{}' is now {} of workspace '{}'.",
                user.name,
                role.as_str(),
                w.name
            );
            if user.role == StoreRole::Admin {
                println!(
                    "note: '{}' is a global admin and sees every workspace anyway.",
                    user.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Revoke { name, workspace } => {
            let store = context::open_store(global).await?;
            let user = account(store.as_ref(), &name).await?;
            let w = super::workspace::named(store.as_ref(), &workspace).await?;
            match store.revoke_membership(user.id, w.id).await {
                Ok(()) => {}
                Err(rampart_store::StoreError::NotFound(_)) => {
                    return Err(usage(format!(
                        "'{}' has no role in workspace '{}'",
                        user.name, w.name
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            audit(
                store.as_ref(),
                "user.revoke",
                &user.name,
                &format!("workspace '{}'", w.name),
            )
            .await?;
            println!(
                "'{}' has no role in workspace '{}' any more.",
                user.name, w.name
            );
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Remove { name, yes } => {
            if !yes && !confirm(&name)? {
                eprintln!("Not removed.");
                return Ok(ExitCode::from(1));
            }
            let store = context::open_store(global).await?;
            let user = rampart_web::remove_user(store.as_ref(), &name, "cli")
                .await
                .map_err(web_error)?;
            println!("Removed {} account '{}'.", user.role.as_str(), user.name);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn store_role(role: Role) -> StoreRole {
    match role {
        Role::Admin => StoreRole::Admin,
        Role::Viewer => StoreRole::Viewer,
    }
}

/// The account named `name` (any case); an unknown name is a usage error.
async fn account(
    store: &dyn rampart_store::Store,
    name: &str,
) -> anyhow::Result<rampart_store::User> {
    store
        .list_users()
        .await?
        .into_iter()
        .find(|u| u.name.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| {
            usage(format!(
                "no account named '{name}'; add one with `rampart user add`"
            ))
        })
}

async fn audit(
    store: &dyn rampart_store::Store,
    action: &str,
    target: &str,
    detail: &str,
) -> anyhow::Result<()> {
    store
        .record_audit(&rampart_store::NewAuditEntry {
            at: chrono::Utc::now(),
            actor: "cli".into(),
            action: action.into(),
            target: Some(target.into()),
            details: Some(detail.into()),
        })
        .await?;
    Ok(())
}

/// The password on standard input, without the newline `echo` or a file adds.
fn read_password() -> anyhow::Result<SecretString> {
    let mut buf = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut buf)
        .map_err(|_| usage("the password on standard input is not text"))?;
    Ok(SecretString::from(
        buf.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

fn confirm(name: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "removing the account '{name}' cannot be undone: add --yes to confirm"
        )));
    }
    eprint!("Remove the account '{name}'? Type its name to confirm: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("cannot read the confirmation")?;
    Ok(answer.trim() == name)
}

/// Bad input and refusals (a weak password, an unknown account, the last admin) are usage errors
/// (exit code 2) with the reason in words; anything else is a failure.
fn web_error(e: rampart_web::AppError) -> anyhow::Error {
    match e {
        rampart_web::AppError::BadRequest(m)
        | rampart_web::AppError::Conflict(m)
        | rampart_web::AppError::NotFound(m) => usage(m),
        other => anyhow::anyhow!("{other}"),
    }
}
