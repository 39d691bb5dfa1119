//! payhook's shared crate: everything the five Lambda functions and the local
//! `payhook dev` pipeline have in common.
//!
//! The receive path is `verify` → `event` → `ledger` (claim) → `route` →
//! `queue` (enqueue); the processors are `process` over `state`. Each store and
//! queue is a small trait with DynamoDB/SQS adapters (feature `aws`) and SQLite
//! adapters (feature `local`) side by side, so the domain code cannot tell
//! which backend it runs on.

pub mod clock;
pub mod config;
pub mod error;
pub mod event;
pub mod intake;
pub mod ledger;
pub mod process;
pub mod queue;
pub mod receive;
pub mod reconcile;
pub mod route;
pub mod state;
pub mod stripe_api;
pub mod telemetry;
pub mod verify;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
#[cfg(any(test, feature = "samples"))]
pub mod sample;
#[cfg(feature = "local")]
pub mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
