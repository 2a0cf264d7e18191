//! switchboard: a centralized TCP message hub for networking courses and LANs.
//!
//! Layers, from the wire inwards: [`frame`] (bytes to frames), [`dialect`] (frames to
//! typed [`protocol`] requests and back), [`server`] (sockets and sessions),
//! [`service`] (the rules of each op), [`hub`] (who is online, rooms) and [`store`]
//! (the durable inbox). [`client`] is the async client library. [`cluster`] is the
//! NATS JetStream layout that several nodes will share a hub through.

pub mod auth;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod dialect;
pub mod frame;
pub mod hub;
pub mod metrics;
pub mod outbound;
pub mod protocol;
pub mod server;
pub mod service;
pub mod store;

pub use client::Client;
