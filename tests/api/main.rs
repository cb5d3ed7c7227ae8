//! In-process tests of the HTTP API, one file per area, over one typed helper stack
//! ([`helpers::TestApp`]: the router over an in-memory store, one method per endpoint).
//! One test binary: one link, one place to look.

mod helpers;

mod agents;
mod autotune;
mod bounds;
mod fleet_builds;
mod harness;
mod indexes;
mod jobs;
mod monitor;
mod ops;
mod trials;
mod writes;
