//! `vmm lab`: guided, self-checking exercises on namespaces, cgroups, VMs and containers
//! (resources/labs/). `list`, `show N`, `check N|all`, `run N`.

pub mod args;
mod catalog;
mod check;
mod format;
mod show;

use std::process::ExitCode;

use edge::exit_code;

use args::{LabArgs, LabCommand, LabSelection};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A lab file that does not follow the format: bad input, like any other.
    #[error("malformed lab: {0}")]
    Format(#[from] format::FormatError),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Failed(String),
}

pub fn run(args: &LabArgs) -> ExitCode {
    match dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmm: error: {e}");
            ExitCode::from(match e {
                LabError::Format(_) | LabError::BadInput(_) => exit_code::BAD_INPUT,
                LabError::Failed(_) => exit_code::FAILED,
            })
        }
    }
}

fn dispatch(args: &LabArgs) -> Result<ExitCode, LabError> {
    let labs = catalog::load(args.labs_dir.as_deref())?;
    match &args.command {
        LabCommand::List => {
            for lab in &labs {
                let needs = if lab.header.needs.contains(&format::Need::LinuxGuests)
                    || lab
                        .steps
                        .iter()
                        .any(|s| s.spec.needs.contains(&format::Need::LinuxGuests))
                {
                    "  [Linux guests for some steps]"
                } else {
                    ""
                };
                println!("{:>3}  {}{needs}", lab.number, lab.title);
                println!("     {}", lab.header.summary);
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Show { number } => {
            print!("{}", show::render(catalog::find(&labs, *number)?));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Run { number, rootfs } => {
            let lab = catalog::find(&labs, *number)?;
            let env = check::StepEnv::prepare(rootfs.as_deref())?;
            show::run(lab, &env)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Check {
            which,
            rootfs,
            only_needing,
        } => {
            let chosen: Vec<&format::Lab> = match which {
                LabSelection::All => labs.iter().collect(),
                LabSelection::One(n) => vec![catalog::find(&labs, *n)?],
            };
            let env = check::StepEnv::prepare(rootfs.as_deref())?;
            let mut failed = 0;
            for lab in chosen {
                failed += check::check(lab, &env, *only_needing)?.failed;
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit_code::FAILED)
            })
        }
    }
}
