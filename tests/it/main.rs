//! Integration tests: a real server over loopback TCP, a real SQLite file in a temp dir.

mod adversarial;
mod auth;
mod binary;
mod common;
mod course;
mod course_programs;
mod crash;
mod dialects;
mod durability;
mod limits;
mod menu_client;
mod native;
mod oneshot;
mod python_example;
mod readme;
mod rooms;
mod roundtrip;
mod services;
mod wire;
