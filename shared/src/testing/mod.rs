//! The store contracts as conformance suites: one per trait (ledger, state
//! store, queue, intake), each case a plain async function over any backend,
//! and a macro per suite that makes every case a test against one backend.
//! The memory and SQLite adapters run them in this crate; the DynamoDB and
//! SQS adapters run them on moto in `payhook-tests`. Cases that only make
//! sense for one backend (restarts, TTLs, malformed rows) stay beside it.
//!
//! [`stripe_api`] is the fake of Stripe's API that reconcile's unit tests,
//! the moto suite and the CLI's end-to-end tests share.

pub mod intake;
pub mod ledger;
pub mod orders;
pub mod queue;
pub mod state;
pub mod stripe_api;

/// Makes each case of `$suite` a `#[tokio::test]` over the backend `$make`
/// yields (see [`ledger_conformance!`](crate::ledger_conformance)).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($suite:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, backend) = $make.await;
                $crate::testing::$suite::$case(&backend, "c_").await;
            }
        )*
    };
}
