#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchboard::dialect::Lab;

fuzz_target!(|data: &[u8]| common::check(|| Lab::new(64 * 1024), data));
