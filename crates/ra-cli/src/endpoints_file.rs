//! The endpoints file `ra-serve` writes: `{"endpoints": ["http://…/v1", …], "model": "…"}`
//! (unknown fields ignored). The client follows it while running (`--endpoints-file`),
//! so replicas that restart or drop out are followed.

pub use rewardanything_client::EndpointsFile;
