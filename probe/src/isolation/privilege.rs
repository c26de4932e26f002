//! Who the probe is to the kernel: its user-namespace mapping, effective capabilities,
//! seccomp mode and no_new_privs, as /proc reports them. Root in a container is often a
//! different root: these fields show how different.

use std::fs;

/// The fields of /proc/self/status the report carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// "" when the field is missing.
    pub cap_eff: String,
    /// 0 when the field is missing (a kernel without seccomp).
    pub seccomp: u32,
    pub no_new_privs: bool,
}

pub fn status() -> Status {
    fs::read_to_string("/proc/self/status")
        .map(|text| parse_status(&text))
        .unwrap_or_default()
}

/// Reads `Name:\tvalue` lines; names are matched whole (`Seccomp` is not `Seccomp_filters`).
fn parse_status(text: &str) -> Status {
    let mut status = Status::default();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name {
            "CapEff" => status.cap_eff = value.to_owned(),
            "Seccomp" => status.seccomp = value.parse().unwrap_or(0),
            "NoNewPrivs" => status.no_new_privs = value == "1",
            _ => {}
        }
    }
    status
}

/// /proc/self/uid_map, one mapping per element, fields separated by single spaces (the
/// kernel pads them to columns).
pub fn uid_map() -> Vec<String> {
    fs::read_to_string("/proc/self/uid_map")
        .map(|text| collapse_uid_map(&text))
        .unwrap_or_default()
}

fn collapse_uid_map(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_matched_by_whole_name() {
        let text = "\
Name:\tvmm-probe
CapInh:\t0000000000000000
CapEff:\t000001fffeffffff
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
";
        assert_eq!(
            parse_status(text),
            Status {
                cap_eff: "000001fffeffffff".to_owned(),
                seccomp: 2,
                no_new_privs: true,
            }
        );
    }

    #[test]
    fn status_without_the_fields_reads_as_unconfined_defaults() {
        assert_eq!(parse_status("Name:\tx\n"), Status::default());
    }

    #[test]
    fn uid_map_columns_collapse_to_single_spaces() {
        let text = "         0          0 4294967295\n         0     100000      65536\n";
        assert_eq!(collapse_uid_map(text), ["0 0 4294967295", "0 100000 65536"]);
    }
}
