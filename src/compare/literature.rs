//! Published numbers shown beside ours, each labelled as literature with its source. They
//! come from other hardware and other software: context for our figures, not a target.

use super::report::LiteratureValue;

pub fn values() -> Vec<LiteratureValue> {
    let firecracker = "Agache et al., \"Firecracker: Lightweight Virtualization for Serverless \
                       Applications\", NSDI 2020";
    let felter = "Felter et al., \"An Updated Performance Comparison of Virtual Machines and \
                  Linux Containers\", ISPASS 2015";
    let lightvm = "Manco et al., \"My VM is Lighter (and Safer) than your Container\", SOSP 2017";
    vec![
        LiteratureValue {
            benchmark: "start.first_output".into(),
            label: "Firecracker: boot to guest user space".into(),
            value: Some(125.0),
            note: "Firecracker's specification: a microVM reaches its init in at most 125 ms"
                .into(),
            source: firecracker.into(),
        },
        LiteratureValue {
            benchmark: "memory.idle_pss".into(),
            label: "Firecracker: VMM overhead per microVM".into(),
            value: Some(5.0),
            note: "at most 5 MiB of memory per microVM beyond the guest's own (about 3 MB \
                   measured)"
                .into(),
            source: firecracker.into(),
        },
        LiteratureValue {
            benchmark: "process.fork_exec".into(),
            label: "LightVM: process creation".into(),
            value: Some(1000.0),
            note: "fork/exec of a process takes about 1 ms; a LightVM unikernel boots in 2.3 ms"
                .into(),
            source: lightvm.into(),
        },
        LiteratureValue {
            benchmark: "cpu.compute".into(),
            label: "containers and KVM: compute near native".into(),
            value: None,
            note: "Linpack and compute-bound work run within a few percent of native in both \
                   Docker and KVM; Firecracker specifies more than 95% of bare-metal compute"
                .into(),
            source: felter.into(),
        },
        LiteratureValue {
            benchmark: "file.random_read".into(),
            label: "KVM halves random-read IOPS".into(),
            value: None,
            note: "with fio, Docker matches native random I/O while KVM reaches about half \
                   the IOPS of native"
                .into(),
            source: felter.into(),
        },
        LiteratureValue {
            benchmark: "net.throughput".into(),
            label: "Firecracker: network throughput".into(),
            value: Some(1812.5),
            note: "14.5 Gbps (1812.5 MB/s) at no more than 80% of one host core".into(),
            source: firecracker.into(),
        },
        LiteratureValue {
            benchmark: "net.rtt".into(),
            label: "Docker NAT adds latency".into(),
            value: None,
            note: "Docker's NAT network adds round-trip latency over the host's stack; KVM's \
                   virtio path adds more"
                .into(),
            source: felter.into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::benchmarks::BENCHMARKS;

    #[test]
    fn every_literature_value_sits_beside_a_known_benchmark() {
        for value in values() {
            assert!(
                BENCHMARKS.iter().any(|b| b.id == value.benchmark),
                "{} names no benchmark",
                value.benchmark
            );
            assert!(!value.source.is_empty());
        }
    }
}
