//! Finds where one pickle ends in a byte stream, and judges whether it is plain data,
//! before serde-pickle sees it.
//!
//! A pickle carries no length: it ends at its STOP opcode. serde-pickle decodes only
//! whole pickles, so this scanner walks the opcodes (resuming where it stopped when more
//! bytes arrive, so a large pickle is scanned once) to find that end. On the way it
//! refuses what a data-only decoder must never be handed:
//!
//! - opcodes that name a global, build an object or call something (`GLOBAL`, `REDUCE`,
//!   `BUILD`, `NEWOBJ`, ...): the classic pickle exploit, refused rather than resolved;
//! - a container reached twice through the memo, and nesting deeper than
//!   [`MAX_DEPTH`]: serde-pickle turns shared references into copies and recurses per
//!   level, so both would let a small pickle cost exponential memory or the stack;
//! - huge integers, whose decimal conversion is quadratic;
//! - sets and frozensets: serde-pickle sorts their items by an order that is not total
//!   for mixed numbers (NaN, integers past 2^53 beside floats), and Rust's sort panics
//!   on that (found by fuzzing; the lab programs send dicts, never sets).
//!
//! Only the opcode framing itself can be broken beyond repair (an unknown opcode, a
//! length over the limit); everything else refuses one pickle and the stream goes on.

use std::collections::HashMap;

/// Deepest nesting of containers accepted; the lab programs send flat dicts.
pub const MAX_DEPTH: u32 = 32;
/// Longest integer literal accepted, in bytes (a u64 needs 20 digits).
const MAX_INT_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// The pickle is not complete yet.
    Incomplete,
    /// The first `len` bytes are one pickle: plain data, or refused for the reason given.
    Complete {
        len: usize,
        refused: Option<&'static str>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("byte {0:#04x} is not a pickle opcode")]
    UnknownOpcode(u8),
    #[error("pickle is over the limit of {max} bytes")]
    TooLarge { max: usize },
}

#[derive(Debug, Clone, Copy)]
enum Item {
    /// An immutable value of this many bytes: copying it is bounded.
    Scalar(u64),
    /// A container nested this deep.
    Container(u32),
}

impl Item {
    fn depth(self) -> u32 {
        match self {
            Item::Scalar(_) => 0,
            Item::Container(depth) => depth,
        }
    }
}

/// What follows an opcode.
enum Arg {
    Fixed(usize),
    /// Up to and including a newline.
    Line,
    /// Two newline-terminated lines (GLOBAL, INST).
    Lines2,
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
}

/// Scanning state for the pickle at the front of a buffer.
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    /// Bytes of the current pickle already walked; always at an opcode boundary.
    pos: usize,
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: HashMap<u64, Item>,
    /// Bytes of scalars copied through the memo or DUP so far.
    copied: u64,
    refused: Option<&'static str>,
}

impl Scanner {
    /// Walks on through `buf`, which starts with the current pickle and holds what has
    /// arrived so far. After `Complete`, the scanner is ready for the next pickle.
    pub fn scan(&mut self, buf: &[u8], max: usize) -> Result<Scanned, ScanError> {
        loop {
            let Some(&op) = buf.get(self.pos) else {
                return self.incomplete(buf, max);
            };
            let Some(arg) = arg_of(op) else {
                return Err(ScanError::UnknownOpcode(op));
            };
            let start = self.pos + 1;
            let Some((payload, next)) = take_arg(buf, start, arg, max)? else {
                return self.incomplete(buf, max);
            };
            self.pos = next;
            if op == b'.' {
                if self.refused.is_none() && self.stack.len() != 1 {
                    self.refused = Some("malformed pickle: STOP without exactly one value");
                }
                let done = Scanned::Complete {
                    len: next,
                    refused: self.refused,
                };
                *self = Scanner::default();
                return Ok(done);
            }
            if self.refused.is_none()
                && let Err(why) = self.apply(op, &buf[payload..next], max)
            {
                self.refused = Some(why);
            }
        }
    }

    fn incomplete(&self, buf: &[u8], max: usize) -> Result<Scanned, ScanError> {
        if buf.len() > max {
            return Err(ScanError::TooLarge { max });
        }
        Ok(Scanned::Incomplete)
    }

    fn push(&mut self, item: Item) {
        self.stack.push(item);
    }

    fn pop(&mut self) -> Result<Item, &'static str> {
        match self.marks.last() {
            Some(&mark) if self.stack.len() <= mark => Err(UNDERFLOW),
            _ => self.stack.pop().ok_or(UNDERFLOW),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>, &'static str> {
        let mark = self.marks.pop().ok_or(UNDERFLOW)?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    /// Adds children to the container on top of the stack.
    fn fill_top(&mut self, children: &[Item]) -> Result<(), &'static str> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(UNDERFLOW);
        }
        let top = self.stack.last_mut().ok_or(UNDERFLOW)?;
        let Item::Container(depth) = *top else {
            return Err("malformed pickle: adding items to a scalar");
        };
        *top = Item::Container(depth.max(container_depth(children)?));
        Ok(())
    }

    fn build(&mut self, children: &[Item]) -> Result<(), &'static str> {
        let depth = container_depth(children)?;
        self.push(Item::Container(depth));
        Ok(())
    }

    fn copy(&mut self, item: Item, max: usize) -> Result<(), &'static str> {
        match item {
            Item::Container(_) => Err("shared or recursive containers are not accepted"),
            Item::Scalar(size) => {
                self.copied += size;
                if self.copied > 4 * max as u64 {
                    return Err("too many repeated values");
                }
                self.push(item);
                Ok(())
            }
        }
    }

    fn memo_put(&mut self, id: u64) -> Result<(), &'static str> {
        let top = *self.stack.last().ok_or(UNDERFLOW)?;
        self.memo.insert(id, top);
        Ok(())
    }

    fn memo_get(&mut self, id: u64, max: usize) -> Result<(), &'static str> {
        let item = *self
            .memo
            .get(&id)
            .ok_or("malformed pickle: unknown memo entry")?;
        self.copy(item, max)
    }

    /// The opcode's effect on the simulated stack.
    fn apply(&mut self, op: u8, arg: &[u8], max: usize) -> Result<(), &'static str> {
        let scalar = |len: usize| Item::Scalar(len as u64);
        match op {
            0x8f..=0x91 => return Err("sets are not accepted"), // EMPTY_SET, ADDITEMS, FROZENSET
            // Literals.
            b'I' | b'L' | b'F' if arg.len() > MAX_INT_BYTES => return Err(HUGE_INT),
            0x8a | 0x8b if arg.len() > MAX_INT_BYTES + 4 => return Err(HUGE_INT),
            b'I' | b'L' | b'F' | b'J' | b'K' | b'M' | b'G' | b'N' | 0x88 | 0x89 | 0x8a | 0x8b
            | b'S' | b'V' | b'T' | b'U' | b'X' | b'B' | b'C' | 0x8c | 0x8d | 0x8e | 0x96 => {
                self.push(scalar(arg.len()))
            }
            // Empty containers.
            b'}' | b']' | b')' => self.push(Item::Container(1)),
            b'(' => self.marks.push(self.stack.len()),
            b'd' | b'l' | b't' => {
                let children = self.pop_mark()?;
                self.build(&children)?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let children = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                self.build(&children)?;
            }
            b'a' => {
                let child = self.pop()?;
                self.fill_top(&[child])?;
            }
            b's' => {
                let children = [self.pop()?, self.pop()?];
                self.fill_top(&children)?;
            }
            b'e' | b'u' => {
                let children = self.pop_mark()?;
                self.fill_top(&children)?;
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = *self.stack.last().ok_or(UNDERFLOW)?;
                self.copy(top, max)?;
            }
            // Memo.
            b'p' => self.memo_put(parse_ascii(arg)?)?,
            b'q' => self.memo_put(u64::from(arg[0]))?,
            b'r' => self.memo_put(u64::from(le_u32(arg)))?,
            0x94 => self.memo_put(self.memo.len() as u64)?,
            b'g' => self.memo_get(parse_ascii(arg)?, max)?,
            b'h' => self.memo_get(u64::from(arg[0]), max)?,
            b'j' => self.memo_get(u64::from(le_u32(arg)), max)?,
            // Framing and version: no effect.
            0x80 | 0x95 => {}
            // Globals, object construction, calls, extensions, persistent ids and
            // out-of-band buffers.
            _ => return Err("names a global, class or callable"),
        }
        Ok(())
    }
}

const UNDERFLOW: &str = "malformed pickle: stack underflow";
const HUGE_INT: &str = "integer literal too large";

fn container_depth(children: &[Item]) -> Result<u32, &'static str> {
    let depth = 1 + children.iter().map(|c| c.depth()).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err("containers nested too deep");
    }
    Ok(depth)
}

fn le_u32(arg: &[u8]) -> u32 {
    u32::from_le_bytes([arg[0], arg[1], arg[2], arg[3]])
}

fn parse_ascii(arg: &[u8]) -> Result<u64, &'static str> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.trim_end().parse().ok())
        .ok_or("malformed pickle: bad memo index")
}

/// The argument layout of each opcode of protocols 0 to 5; `None` for unknown bytes.
fn arg_of(op: u8) -> Option<Arg> {
    Some(match op {
        b'('
        | b'.'
        | b'0'
        | b'1'
        | b'2'
        | b'N'
        | b'Q'
        | b'R'
        | b'a'
        | b'b'
        | b'd'
        | b'}'
        | b'e'
        | b'l'
        | b']'
        | b'o'
        | b's'
        | b't'
        | b')'
        | b'u'
        | 0x81
        | 0x85..=0x89
        | 0x8f..=0x94
        | 0x97
        | 0x98 => Arg::Fixed(0),
        b'K' | b'h' | b'q' | 0x80 | 0x82 => Arg::Fixed(1),
        b'M' | 0x83 => Arg::Fixed(2),
        b'J' | b'j' | b'r' | 0x84 => Arg::Fixed(4),
        b'G' | 0x95 => Arg::Fixed(8),
        b'F' | b'I' | b'L' | b'P' | b'S' | b'V' | b'g' | b'p' => Arg::Line,
        b'c' | b'i' => Arg::Lines2,
        b'U' | b'C' | 0x8a | 0x8c => Arg::Counted(1),
        b'T' | b'X' | b'B' | 0x8b => Arg::Counted(4),
        0x8d | 0x8e | 0x96 => Arg::Counted(8),
        _ => return None,
    })
}

/// Where the opcode's argument starts and where the next opcode starts, once the
/// argument has fully arrived.
fn take_arg(
    buf: &[u8],
    start: usize,
    arg: Arg,
    max: usize,
) -> Result<Option<(usize, usize)>, ScanError> {
    let line_end = |from: usize| {
        buf.get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map(|at| from + at + 1)
    };
    let end = match arg {
        Arg::Fixed(n) => start + n,
        Arg::Line => match line_end(start) {
            Some(end) => end,
            None => return Ok(None),
        },
        Arg::Lines2 => match line_end(start).and_then(line_end) {
            Some(end) => end,
            None => return Ok(None),
        },
        Arg::Counted(width) => {
            let Some(bytes) = buf.get(start..start + width) else {
                return Ok(None);
            };
            let mut len = [0u8; 8];
            len[..width].copy_from_slice(bytes);
            let len = u64::from_le_bytes(len);
            if len > max as u64 {
                return Err(ScanError::TooLarge { max });
            }
            let from = start + width;
            let end = from + len as usize;
            return Ok((buf.len() >= end).then_some((from, end)));
        }
    };
    Ok((buf.len() >= end).then_some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(bytes: &[u8]) -> Result<Scanned, ScanError> {
        Scanner::default().scan(bytes, 1 << 20)
    }

    /// `pickle.dumps({'name': 'Jose Ortiz', 'email': 'jose@sfsu.edu'})`, protocol 4.
    const DICT: &[u8] = b"\x80\x04\x95/\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x04name\x94\x8c\nJose Ortiz\x94\x8c\x05email\x94\x8c\rjose@sfsu.edu\x94u.";

    #[test]
    fn a_python_dict_is_plain_data_and_its_end_is_found() {
        let mut bytes = DICT.to_vec();
        bytes.extend_from_slice(b"\x80\x04N.");
        assert_eq!(
            scan_all(&bytes),
            Ok(Scanned::Complete {
                len: DICT.len(),
                refused: None
            })
        );
    }

    #[test]
    fn every_prefix_is_incomplete_and_resuming_finds_the_same_end() {
        for cut in 0..DICT.len() {
            let mut scanner = Scanner::default();
            assert_eq!(scanner.scan(&DICT[..cut], 1 << 20), Ok(Scanned::Incomplete));
            assert_eq!(
                scanner.scan(DICT, 1 << 20),
                Ok(Scanned::Complete {
                    len: DICT.len(),
                    refused: None
                })
            );
        }
    }

    #[test]
    fn globals_and_calls_are_refused_but_framed() {
        // pickle.dumps of an object whose __reduce__ returns (os.system, ('id',)), protocol 0.
        let reduce = b"cposix\nsystem\np0\n(Vid\np1\ntp2\nRp3\n.";
        assert_eq!(
            scan_all(reduce),
            Ok(Scanned::Complete {
                len: reduce.len(),
                refused: Some("names a global, class or callable")
            })
        );
        let stack_global = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.";
        assert!(matches!(
            scan_all(stack_global),
            Ok(Scanned::Complete {
                refused: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn shared_containers_and_deep_nesting_are_refused() {
        // l = []; [l, l]: the second reference to a container comes through the memo.
        let shared = b"\x80\x04]\x94(]\x94h\x01e.";
        assert!(matches!(
            scan_all(shared),
            Ok(Scanned::Complete {
                refused: Some("shared or recursive containers are not accepted"),
                ..
            })
        ));
        let mut deep = b"\x80\x04".to_vec();
        deep.extend(std::iter::repeat_n(b']', 40));
        deep.extend(std::iter::repeat_n(b'a', 39));
        deep.push(b'.');
        assert!(matches!(
            scan_all(&deep),
            Ok(Scanned::Complete {
                refused: Some("containers nested too deep"),
                ..
            })
        ));
    }

    #[test]
    fn broken_framing_is_an_error() {
        assert_eq!(scan_all(b"\xff"), Err(ScanError::UnknownOpcode(0xff)));
        assert_eq!(
            scan_all(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"),
            Err(ScanError::TooLarge { max: 1 << 20 })
        );
        let mut scanner = Scanner::default();
        assert_eq!(
            scanner.scan(&[b'V'; 100], 50),
            Err(ScanError::TooLarge { max: 50 })
        );
    }
}
