//! The command line of `vmm-probe`, parsed by hand: the probe starts thousands of times in
//! a benchmark and must stay small, so no argument-parsing crate. (`vmm-probe true` never
//! gets here: `main` answers it before anything else runs.)

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::bench::{NetTarget, Settings};
use crate::report::Canaries;

pub const USAGE: &str = "\
usage: vmm-probe true
       vmm-probe hold NAME
       vmm-probe isolation --canaries JSON [--exceed-memory-limit]
       vmm-probe bench [--budget-ms N] [--cpu-work N] [--io-dir DIR] [--net IP:PORT|gateway:PORT] [--wait-for-go]

true       exit 0 at once (the target of the fork+exec benchmark)
hold       set this process's name to NAME, print `holding`, sleep until killed
isolation  print what this process can see of the host, as one JSON line
           (--exceed-memory-limit: a child touches 32 MiB more than the memory limit;
           without a cgroup limit that is all of this machine's RAM)
bench      print how fast this process runs, as one JSON line (last line of stdout);
           --wait-for-go prints `vmm-probe: ready` first and waits for a line on stdin
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Hold {
        name: String,
    },
    Isolation {
        canaries: Canaries,
        exceed_memory_limit: bool,
    },
    Bench {
        settings: Settings,
        wait_for_go: bool,
    },
}

/// A command line the probe does not understand; printed as one line, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see vmm-probe --help)", self.0)
    }
}

fn usage<T>(message: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(message.into()))
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some((command, rest)) = args.split_first() else {
        return usage("no command given: true, hold, isolation or bench");
    };
    match command.as_str() {
        "help" | "--help" | "-h" => Ok(Command::Help),
        "hold" => match rest {
            [name] if !name.is_empty() && !name.contains('\0') => {
                Ok(Command::Hold { name: name.clone() })
            }
            _ => usage("hold takes one NAME"),
        },
        "isolation" => isolation(rest),
        "bench" => bench(rest),
        other => usage(format!(
            "unknown command {other:?}: true, hold, isolation or bench"
        )),
    }
}

/// Splits `--name=value` and `--name value`; the value is fetched only for flags that take
/// one.
struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
}

impl<'a> Flags<'a> {
    fn new(args: &'a [String]) -> Self {
        Flags { args: args.iter() }
    }

    /// The next flag and its inline value, if any.
    fn next_flag(&mut self) -> Option<(&'a str, Option<&'a str>)> {
        let arg = self.args.next()?;
        Some(match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (arg.as_str(), None),
        })
    }

    fn value(&mut self, flag: &str, inline: Option<&'a str>) -> Result<&'a str, UsageError> {
        match inline {
            Some(value) => Ok(value),
            None => match self.args.next() {
                Some(value) => Ok(value),
                None => usage(format!("{flag} needs a value")),
            },
        }
    }
}

fn no_value(flag: &str, inline: Option<&str>) -> Result<(), UsageError> {
    match inline {
        Some(_) => usage(format!("{flag} takes no value")),
        None => Ok(()),
    }
}

fn once<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<(), UsageError> {
    if slot.is_some() {
        return usage(format!("{flag} is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn isolation(args: &[String]) -> Result<Command, UsageError> {
    let mut canaries = None;
    let mut exceed_memory_limit = false;
    let mut flags = Flags::new(args);
    while let Some((flag, inline)) = flags.next_flag() {
        match flag {
            "--canaries" => {
                let json = flags.value(flag, inline)?;
                let parsed = match serde_json::from_str::<Canaries>(json) {
                    Ok(parsed) => parsed,
                    Err(e) => return usage(format!("--canaries is not a canaries document: {e}")),
                };
                once(&mut canaries, flag, parsed)?;
            }
            "--exceed-memory-limit" => {
                no_value(flag, inline)?;
                exceed_memory_limit = true;
            }
            other => return usage(format!("unknown argument {other:?} of isolation")),
        }
    }
    match canaries {
        Some(canaries) => Ok(Command::Isolation {
            canaries,
            exceed_memory_limit,
        }),
        None => usage("isolation needs --canaries JSON"),
    }
}

fn bench(args: &[String]) -> Result<Command, UsageError> {
    let (mut budget_ms, mut cpu_work, mut io_dir, mut net) = (None, None, None, None);
    let mut wait_for_go = false;
    let mut flags = Flags::new(args);
    while let Some((flag, inline)) = flags.next_flag() {
        match flag {
            "--budget-ms" => once(
                &mut budget_ms,
                flag,
                positive(flag, flags.value(flag, inline)?)?,
            )?,
            "--cpu-work" => once(
                &mut cpu_work,
                flag,
                positive(flag, flags.value(flag, inline)?)?,
            )?,
            "--io-dir" => {
                let dir = flags.value(flag, inline)?;
                if dir.is_empty() {
                    return usage("--io-dir needs a directory");
                }
                once(&mut io_dir, flag, PathBuf::from(dir))?;
            }
            "--net" => {
                let addr = flags.value(flag, inline)?;
                let target = match addr.strip_prefix("gateway:") {
                    Some(port) => port.parse().ok().map(|port| NetTarget::Gateway { port }),
                    None => addr.parse::<SocketAddr>().ok().map(NetTarget::Address),
                };
                match target {
                    Some(target) => once(&mut net, flag, target)?,
                    None => {
                        return usage(format!(
                            "--net needs IP:PORT or gateway:PORT (an address, not a name), \
                             not {addr:?}"
                        ))
                    }
                }
            }
            "--wait-for-go" => {
                no_value(flag, inline)?;
                wait_for_go = true;
            }
            other => return usage(format!("unknown argument {other:?} of bench")),
        }
    }
    let defaults = Settings::default();
    Ok(Command::Bench {
        settings: Settings {
            budget: budget_ms.map_or(defaults.budget, Duration::from_millis),
            cpu_work: cpu_work.unwrap_or(defaults.cpu_work),
            io_dir: io_dir.unwrap_or(defaults.io_dir),
            net,
        },
        wait_for_go,
    })
}

/// A whole number above zero.
fn positive(flag: &str, value: &str) -> Result<u64, UsageError> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => usage(format!(
            "{flag} needs a whole number above 0, not {value:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, UsageError> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        parse(&args)
    }

    const CANARIES: &str = r#"{"process_name":"c-proc","shm_key":11,"msg_key":12,"hostname":"c-host","tmp_file":"/tmp/c","abstract_socket":"c-sock","tcp_port":4000}"#;

    #[test]
    fn bench_without_flags_takes_the_defaults() {
        assert_eq!(
            parse_strs(&["bench"]),
            Ok(Command::Bench {
                settings: Settings::default(),
                wait_for_go: false
            })
        );
    }

    #[test]
    fn bench_flags_are_read_in_both_spellings() {
        let expected = Command::Bench {
            settings: Settings {
                budget: Duration::from_millis(50),
                cpu_work: 1000,
                io_dir: PathBuf::from("/data"),
                net: Some(NetTarget::Address("10.0.0.1:7000".parse().unwrap())),
            },
            wait_for_go: true,
        };
        let spaced = [
            "bench",
            "--budget-ms",
            "50",
            "--cpu-work",
            "1000",
            "--io-dir",
            "/data",
            "--net",
            "10.0.0.1:7000",
            "--wait-for-go",
        ];
        let inline = [
            "bench",
            "--wait-for-go",
            "--net=10.0.0.1:7000",
            "--io-dir=/data",
            "--cpu-work=1000",
            "--budget-ms=50",
        ];
        assert_eq!(parse_strs(&spaced), Ok(expected.clone()));
        assert_eq!(parse_strs(&inline), Ok(expected));
    }

    #[test]
    fn isolation_reads_the_canaries_document() {
        let Ok(Command::Isolation {
            canaries,
            exceed_memory_limit,
        }) = parse_strs(&["isolation", "--canaries", CANARIES, "--exceed-memory-limit"])
        else {
            panic!("isolation was not parsed");
        };
        assert_eq!(canaries.process_name, "c-proc");
        assert_eq!(canaries.tcp_port, 4000);
        assert!(exceed_memory_limit);
    }

    #[test]
    fn hold_takes_exactly_one_name() {
        assert_eq!(
            parse_strs(&["hold", "canary"]),
            Ok(Command::Hold {
                name: "canary".to_owned()
            })
        );
        assert!(parse_strs(&["hold"]).is_err());
        assert!(parse_strs(&["hold", "a", "b"]).is_err());
    }

    #[test]
    fn bad_usage_is_an_error_naming_the_problem() {
        let message = |args: &[&str]| parse_strs(args).unwrap_err().to_string();
        assert!(message(&[]).starts_with("no command given"));
        assert!(message(&["frobnicate"]).starts_with("unknown command \"frobnicate\""));
        assert!(message(&["isolation"]).starts_with("isolation needs --canaries"));
        assert!(message(&["isolation", "--canaries", "{}"]).starts_with("--canaries is not"));
        assert!(message(&["bench", "--budget-ms", "0"]).starts_with("--budget-ms needs a whole"));
        assert!(message(&["bench", "--cpu-work", "x"]).starts_with("--cpu-work needs a whole"));
        assert!(message(&["bench", "--budget-ms"]).starts_with("--budget-ms needs a value"));
        assert!(message(&["bench", "--net", "localhost:80"])
            .starts_with("--net needs IP:PORT or gateway:PORT"));
        assert!(message(&["bench", "--net", "gateway:x"]).starts_with("--net needs"));
        assert!(message(&["bench", "--io-dir", "/a", "--io-dir", "/b"]).contains("twice"));
        assert!(message(&["bench", "--wait-for-go=yes"]).contains("takes no value"));
        assert!(message(&["bench", "--verbose"]).starts_with("unknown argument \"--verbose\""));
    }

    #[test]
    fn a_usage_error_is_one_line() {
        let e = parse_strs(&["isolation", "--canaries", "{\n"]).unwrap_err();
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn net_gateway_names_a_port_on_the_default_gateway() {
        match parse_strs(&["bench", "--net", "gateway:7000"]) {
            Ok(Command::Bench { settings, .. }) => {
                assert_eq!(settings.net, Some(NetTarget::Gateway { port: 7000 }))
            }
            other => panic!("{other:?}"),
        }
    }
}
