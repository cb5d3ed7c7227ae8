//! vectune: an HTTP service that tunes HNSW indexes by itself and hot-swaps the winner.
#![warn(missing_docs)]

pub mod agent;
pub mod autotune;
pub mod cli;
pub mod config;
pub mod distance;
pub mod error;
pub mod fleet;
pub mod harness;
pub mod hnsw;
pub mod http;
pub mod jobs;
pub mod kernels;
pub mod measure;
pub mod metrics;
pub mod monitor;
pub mod names;
pub mod params;
pub mod promotion;
pub mod rng;
pub mod service;
pub mod serving;
pub mod startup;
pub mod stats;
pub mod storage;
pub mod trials;
pub mod vectors;
