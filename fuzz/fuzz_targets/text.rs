#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchboard::dialect::Text;

fuzz_target!(|data: &[u8]| common::check(|| Text::default(), data));
