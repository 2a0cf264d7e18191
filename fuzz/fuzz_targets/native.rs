#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchboard::dialect::Native;

fuzz_target!(|data: &[u8]| common::check(|| Native::new(64 * 1024), data));
