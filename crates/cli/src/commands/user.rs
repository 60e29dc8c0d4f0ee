//! `rampart user add NAME --role admin|viewer --password-stdin`.

use std::io::Read;
use std::process::ExitCode;

use rampart_store::Role as StoreRole;
use secrecy::SecretString;

use crate::cli::{Global, Role, UserCommand};
use crate::context;
use crate::output::usage;

pub async fn run(global: &Global, command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add { name, role, .. } => {
            let mut buf = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut buf)
                .map_err(|_| usage("the password on standard input is not text"))?;
            let password = SecretString::from(buf.trim_end_matches(['\n', '\r']).to_owned());
            let store = context::open_store(global).await?;
            let role = match role {
                Role::Admin => StoreRole::Admin,
                Role::Viewer => StoreRole::Viewer,
            };
            let user = rampart_web::create_user(store.as_ref(), &name, role, &password, "cli")
                .await
                .map_err(|e| match e {
                    rampart_web::AppError::BadRequest(m) | rampart_web::AppError::Conflict(m) => {
                        usage(m)
                    }
                    other => anyhow::anyhow!("{other}"),
                })?;
            println!("Added {} account '{}'.", role.as_str(), user.name);
            Ok(ExitCode::SUCCESS)
        }
    }
}
