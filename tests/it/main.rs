//! Integration tests: a real server over loopback TCP, a real SQLite file in a temp dir.

mod admin;
mod adversarial;
mod auth;
mod binary;
mod bounds;
mod client_lib;
mod common;
mod connect_cli;
mod course;
mod course_programs;
mod crash;
mod dialects;
mod durability;
mod lifecycle;
mod limits;
mod liveness;
mod menu_client;
mod native;
mod oneshot;
mod python_example;
mod rooms;
mod roundtrip;
mod security;
mod services;
mod store_open;
mod wire;
