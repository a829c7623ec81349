//! shardis's chaos suite, modelled on Jepsen's redis and etcd suites: a fresh cluster
//! of release binaries, concurrent clients, faults on a seeded schedule, heal, quiet
//! period, final reads, check. See jepsen/README.md.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod plot;
pub mod proxy;
pub mod rng;
pub mod run;
pub mod workload;
