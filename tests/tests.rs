//! Integration tests against real servers started on 127.0.0.1. One binary; this file is the
//! index, `util` starts the servers and gives each test its own temporary directory.

mod util;

mod bench;
mod config_check;
mod dialog;
mod file_access;
mod global_tags;
mod ingest_e2e;
mod ingest_files;
mod ingest_influx;
mod ingest_restart;
mod kamailio_fixture;
mod kamailio_stats;
mod numbers;
mod ops_conventions;
mod ops_prometheus;
mod ops_report;
mod probe;
mod probe_cluster;
mod service;
mod service_isolation;
mod sink;
mod sink_isolation;
mod sip_codec;
mod sip_conformance;
mod source_address;
mod source_tidy;
